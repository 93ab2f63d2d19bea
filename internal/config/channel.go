package config

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/gorilla/mux"
)

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// placeholderRE is a path variable used in a URL or a subscribe frame.
	placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_-]*)\}`)
)

// handshakeHeaders cannot be set in a channel's headers, with the reason why.
// Keys are in canonical form.
var handshakeHeaders = map[string]string{
	"Host":                     "it is taken from the URL",
	"Connection":               "the WebSocket handshake sets it",
	"Upgrade":                  "the WebSocket handshake sets it",
	"Sec-Websocket-Key":        "the WebSocket handshake sets it",
	"Sec-Websocket-Version":    "the WebSocket handshake sets it",
	"Sec-Websocket-Extensions": "the WebSocket handshake sets it",
	"Sec-Websocket-Protocol":   "use subprotocols instead",
}

// entry is what the checks across channels need to know of one channel.
type entry struct {
	key      keyPath // channel[i]
	name     string  // "" when missing or bad
	nameLine int
	route    *route // nil when the path is missing or bad
	pathLine int
}

// String names the channel in a message about another one.
func (e *entry) String() string {
	if e.name != "" {
		return fmt.Sprintf("channel %q", e.name)
	}
	return e.key.String()
}

// route is a channel's valid path template.
type route struct {
	path text
	vars []string
	norm string // the template with every variable written "{}"
	mux  *mux.Route
}

func (r *route) templated() bool {
	return len(r.vars) > 0
}

// matches reports whether the template matches a request for path.
func (r *route) matches(path string) bool {
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}
	return r.mux.Match(req, &mux.RouteMatch{})
}

// channels reads the [[channel]] array.
func (p *parser) channels(key keyPath, v any, up Upstream, dashboard bool) []Channel {
	arr, ok := v.([]any)
	if !ok {
		p.add(key, "expected an array of tables ([[channel]]), got %s", typeName(v))
		return nil
	}
	var out []Channel
	var seen []*entry
	for i, elem := range arr {
		t, ok := p.asTable(key.index(i), elem)
		if !ok {
			continue
		}
		c, e := p.channel(t, up)
		if !p.checkReserved(e, dashboard) {
			e.route = nil // reported once is enough
		}
		p.checkCollisions(e, seen)
		seen = append(seen, e)
		out = append(out, c)
	}
	return out
}

func (p *parser) channel(t *table, up Upstream) (Channel, *entry) {
	c := newChannel(up)
	c.Line = p.lines.line(t.key)
	e := &entry{key: t.key}

	if name, key, ok := t.text("name"); ok {
		if nameRE.MatchString(name.val) {
			c.Name, e.name, e.nameLine = name.val, name.val, p.lines.line(key)
		} else {
			p.add(key, "%s is not a valid name: use 1 to 64 of A-Z a-z 0-9 . _ -", name)
		}
	} else if !t.has("name") {
		p.add(key, "missing: every channel needs a name")
	}

	if path, key, ok := t.text("path"); ok {
		if r, msg := parseRoute(path); msg != "" {
			p.add(key, "%s", msg)
		} else {
			c.Path, e.route, e.pathLine = path.val, r, p.lines.line(key)
		}
	} else if !t.has("path") {
		p.add(key, "missing: every channel needs a path")
	}

	if u, key, ok := t.text("url"); ok {
		if e.route != nil {
			p.checkPlaceholders(key, u, e.route)
		}
		if msg := checkURL(u); msg != "" {
			p.add(key, "%s", msg)
		} else {
			c.URL = u.val
		}
	} else if !t.has("url") {
		p.add(key, "missing: every channel needs a ws:// or wss:// URL")
	}

	c.Headers = p.headers(t)
	if protos, key, ok := t.texts("subprotocols"); ok {
		for i, proto := range protos {
			if !isToken(proto.val) {
				p.add(key.index(i), "%s is not a valid subprotocol name", proto)
				continue
			}
			c.Subprotocols = append(c.Subprotocols, proto.val)
		}
	}
	if frames, key, ok := t.texts("subscribe"); ok {
		for i, frame := range frames {
			if e.route != nil {
				p.checkPlaceholders(key.index(i), frame, e.route)
			}
			c.Subscribe = append(c.Subscribe, frame.val)
		}
	}

	t.boolean("lazy", &c.Lazy)
	t.duration("linger", &c.Linger, false)
	if field, key, ok := t.text("event_field"); ok {
		if msg := checkEventField(field); msg != "" {
			p.add(key, "%s", msg)
		} else {
			c.EventField = field.val
		}
	}
	t.oneOf("binary", &c.Binary, BinaryBase64, BinaryDrop)
	t.integer("replay", &c.Replay, 0)
	t.duration("replay_age", &c.ReplayAge, false)
	t.integer("replay_on_connect", &c.ReplayOnConnect, 0)
	t.boolean("status_events", &c.StatusEvents)
	t.boolean("public", &c.Public)
	t.integer("max_channels", &c.MaxChannels, 1)
	if sub := t.sub("upstream"); sub != nil {
		p.upstream(sub, &c.Upstream)
	}
	t.done()

	if c.ReplayOnConnect > c.Replay {
		p.add(t.blame("replay_on_connect", "replay"), "replay_on_connect (%d) must not be more than replay (%d)", c.ReplayOnConnect, c.Replay)
	}
	if !c.Lazy && e.route != nil && e.route.templated() {
		p.add(t.key.child("lazy"), "must be true for a templated path, whose channels open on demand")
	}
	return c, e
}

// parseRoute checks a path template; it returns a message when it is bad.
func parseRoute(path text) (*route, string) {
	if !strings.HasPrefix(path.val, "/") {
		return nil, fmt.Sprintf("%s must start with /", path)
	}
	norm, ok := normalize(path.val)
	if !ok {
		return nil, fmt.Sprintf("bad path template %s: unbalanced braces", path)
	}
	if strings.ContainsAny(norm, "?#") {
		return nil, fmt.Sprintf("%s must not contain ? or #", path)
	}
	r := &route{path: path, norm: norm, mux: mux.NewRouter().Path(path.val)}
	if err := r.mux.GetError(); err != nil {
		if path.env {
			return nil, fmt.Sprintf("bad path template %s", path)
		}
		return nil, fmt.Sprintf("bad path template %s: %s", path, strings.TrimPrefix(err.Error(), "mux: "))
	}
	r.vars, _ = r.mux.GetVarNames()
	for i, v := range r.vars {
		if slices.Contains(r.vars[:i], v) {
			return nil, fmt.Sprintf("bad path template %s: variable %q appears twice", path, v)
		}
	}
	return r, ""
}

// normalize writes every {variable} of a template as "{}", so that templates
// that differ only in their variables compare equal. It returns false when
// the braces are unbalanced.
func normalize(tpl string) (string, bool) {
	var b strings.Builder
	level := 0
	for i := 0; i < len(tpl); i++ {
		switch c := tpl[i]; {
		case c == '{':
			if level == 0 {
				b.WriteString("{}")
			}
			level++
		case c == '}':
			level--
			if level < 0 {
				return "", false
			}
		case level == 0:
			b.WriteByte(c)
		}
	}
	return b.String(), level == 0
}

// checkPlaceholders reports every {name} in s that is not a variable of the
// channel's path.
func (p *parser) checkPlaceholders(key keyPath, s text, r *route) {
	var reported []string
	for _, m := range placeholderRE.FindAllStringSubmatch(s.val, -1) {
		name := m[1]
		if slices.Contains(r.vars, name) || slices.Contains(reported, name) {
			continue
		}
		reported = append(reported, name)
		if strings.Contains(s.raw, m[0]) {
			p.add(key, "%s is not a variable of the path %s", m[0], r.path)
		} else {
			p.add(key, "an environment variable puts a {placeholder} in it that is not a variable of the path %s", r.path)
		}
	}
}

// checkURL returns what is wrong with an upstream URL, without ever quoting
// it: a URL may hold credentials.
func checkURL(u text) string {
	s := placeholderRE.ReplaceAllString(u.val, "0")
	parsed, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if !u.env && errors.As(err, &ue) {
			return "not a valid URL: " + ue.Err.Error()
		}
		return "not a valid URL"
	}
	switch {
	case parsed.Scheme == "":
		return "missing scheme: the URL must start with ws:// or wss://"
	case parsed.Scheme != "ws" && parsed.Scheme != "wss":
		if u.env {
			return "the scheme must be ws or wss"
		}
		return fmt.Sprintf("the scheme must be ws or wss, not %q", parsed.Scheme)
	case parsed.Host == "":
		return "missing host"
	case strings.Contains(s, "#"):
		return "a WebSocket URL must not have a #fragment"
	}
	return ""
}

// checkEventField returns what is wrong with an event_field: a top-level
// name, or a JSON pointer (RFC 6901) when it starts with "/".
func checkEventField(field text) string {
	s := field.val
	if !strings.HasPrefix(s, "/") {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '~' && (i+1 == len(s) || s[i+1] != '0' && s[i+1] != '1') {
			return fmt.Sprintf(`bad JSON pointer %s: "~" must be followed by 0 or 1`, field)
		}
	}
	return ""
}

// headers reads a channel's headers table.
func (p *parser) headers(t *table) map[string]string {
	v, key, ok := t.take("headers")
	if !ok {
		return nil
	}
	ht, ok := p.asTable(key, v)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(ht.m))
	for name := range ht.m {
		names = append(names, name)
	}
	slices.Sort(names)

	out := map[string]string{}
	first := map[string]string{} // canonical name -> the name as written
	for _, name := range names {
		hkey := key.child(name)
		val, ok := p.asText(hkey, ht.m[name])
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if !isToken(name) {
			p.add(hkey, "not a valid header name")
			continue
		}
		if why, taken := handshakeHeaders[canon]; taken {
			p.add(hkey, "cannot be set: %s", why)
			continue
		}
		if other, dup := first[canon]; dup {
			p.add(hkey, "the same header as %s", other)
			continue
		}
		first[canon] = quoteKey(name)
		if !ok {
			continue
		}
		if strings.IndexFunc(val.val, isControl) >= 0 {
			p.add(hkey, "the value must not contain control characters")
			continue
		}
		out[name] = val.val
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func isControl(r rune) bool {
	return r < ' ' && r != '\t' || r == 0x7f
}

// isToken reports whether s is an HTTP token (RFC 9110), as header names and
// WebSocket subprotocols are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// checkReserved reports a path that is, is under, or matches a built-in
// endpoint, and then returns false.
func (p *parser) checkReserved(e *entry, dashboard bool) bool {
	r := e.route
	if r == nil {
		return true
	}
	reserved := slices.Clone(ReservedPaths)
	if dashboard {
		reserved = append(reserved, DashboardPaths...)
	}
	key := e.key.child("path")
	for _, rp := range reserved {
		switch {
		case rp == "/" && r.norm == "/":
			p.add(key, `"/" is the dashboard; set server.dashboard = false to use it`)
		case rp == "/" && r.templated() && r.matches(rp):
			p.add(key, `%s matches "/", the dashboard; set server.dashboard = false to use it`, r.path)
		case rp == "/":
			continue
		case r.norm == rp && dashboardAsset(rp):
			p.add(key, "%s is a file of the dashboard; set server.dashboard = false to use it", r.path)
		case r.norm == rp:
			p.add(key, "%s is a built-in endpoint", r.path)
		case strings.HasPrefix(r.norm, rp+"/"):
			p.add(key, "%s is under the built-in endpoint %q", r.path, rp)
		case r.templated() && r.matches(rp):
			p.add(key, "%s matches the built-in endpoint %q", r.path, rp)
		default:
			continue
		}
		return false
	}
	return true
}

func dashboardAsset(p string) bool { return p != "/" && slices.Contains(DashboardPaths, p) }

// checkCollisions reports a name or path that an earlier channel already has.
func (p *parser) checkCollisions(e *entry, earlier []*entry) {
	if e.name != "" {
		for _, o := range earlier {
			if o.name == e.name {
				p.add(e.key.child("name"), "%q is already the name of the channel on line %d", e.name, o.nameLine)
				break
			}
		}
	}
	r := e.route
	if r == nil {
		return
	}
	for _, o := range earlier {
		or := o.route
		if or == nil {
			continue
		}
		var msg string
		switch {
		case r.path.val == or.path.val:
			msg = fmt.Sprintf("%s is already used by %s (line %d)", r.path, o, o.pathLine)
		case r.norm == or.norm:
			msg = fmt.Sprintf("%s is the same path as %s of %s (line %d)", r.path, or.path, o, o.pathLine)
		case !r.templated() && or.templated() && or.matches(r.path.val):
			msg = fmt.Sprintf("%s is also matched by %s of %s (line %d)", r.path, or.path, o, o.pathLine)
		case r.templated() && !or.templated() && r.matches(or.path.val):
			msg = fmt.Sprintf("%s also matches %s of %s (line %d)", r.path, or.path, o, o.pathLine)
		default:
			continue
		}
		p.add(e.key.child("path"), "%s", msg)
		return
	}
}
