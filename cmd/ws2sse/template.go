package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/downstream"
)

// A templated channel ("/ticker/{symbol:[a-z0-9]{1,12}}") opens one channel
// per distinct set of variable values. The values have passed the
// template's regular expressions before they get here, and are escaped
// where they are substituted: URL-escaped in the upstream URL, JSON-escaped
// in subscribe frames.

// templateVars returns the names of a mux path template's variables, in
// order.
func templateVars(path string) []string {
	var names []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '{':
			if depth == 0 {
				start = i + 1
			}
			depth++
		case '}':
			depth--
			if depth == 0 {
				name, _, _ := strings.Cut(path[start:i], ":")
				names = append(names, strings.TrimSpace(name))
			}
		}
	}
	return names
}

// templateRoute returns how a templated path names the channel of a
// request, and opens it.
func templateRoute(hub *bridge.Hub, base bridge.Options, path string, maxChannels int) (func(*http.Request) string, downstream.Resolver) {
	vars := templateVars(path)
	group := base.Name
	values := func(r *http.Request) []string {
		v := mux.Vars(r)
		out := make([]string, len(vars))
		for i, name := range vars {
			out[i] = v[name]
		}
		return out
	}
	name := func(r *http.Request) string { return channelName(group, values(r)) }
	open := func(r *http.Request) (*bridge.Channel, error) {
		vals := values(r)
		opts := base
		opts.Name = channelName(group, vals)
		opts.Path = r.URL.EscapedPath() // as a client requests it again
		opts.Upstream.URL = substituteURL(base.Upstream.URL, vars, vals)
		opts.Upstream.Subscribe = make([][]byte, len(base.Upstream.Subscribe))
		for i, frame := range base.Upstream.Subscribe {
			opts.Upstream.Subscribe[i] = []byte(substitute(string(frame), vars, vals, jsonEscape))
		}
		return hub.OpenInGroup(group, maxChannels, opts)
	}
	return name, open
}

// substituteURL fills a URL template: path-escaped before the query,
// query-escaped in it.
func substituteURL(raw string, vars, values []string) string {
	path, query, hasQuery := strings.Cut(raw, "?")
	out := substitute(path, vars, values, url.PathEscape)
	if hasQuery {
		out += "?" + substitute(query, vars, values, url.QueryEscape)
	}
	return out
}

// channelName names the channel of a templated path's group for a set of
// values: "group/value/value". A value may hold "/" when its pattern lets
// it, so "/" and "%" are escaped in each, and two sets of values never
// share a name (and with it a channel, its upstream and its shared log).
func channelName(group string, values []string) string {
	var b strings.Builder
	b.WriteString(group)
	for _, v := range values {
		b.WriteByte('/')
		nameEscaper.WriteString(&b, v)
	}
	return b.String()
}

var nameEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// substitute replaces each "{name}" in s by escape(value), in one pass: a
// value that reads like another variable stays as it is.
func substitute(s string, vars, values []string, escape func(string) string) string {
	pairs := make([]string, 0, 2*len(vars))
	for i, name := range vars {
		pairs = append(pairs, "{"+name+"}", escape(values[i]))
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// jsonEscape escapes a value for the inside of a JSON string.
func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
