package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/config"
	"github.com/ws2sse/ws2sse/upstream"
)

// The built-in endpoints that report on the process (SPEC section 9).

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when every eager channel's upstream is connected and
// notReady has nothing to say (in cluster mode: Redis answers), else 503
// with one line per problem.
func readyz(hub *bridge.Hub, notReady func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		down := notReady()
		for _, c := range hub.Channels() {
			if c.Lazy() {
				continue
			}
			if inf := c.Info(); inf.State.State != upstream.StateUp {
				line := fmt.Sprintf("channel %s: upstream %s", inf.Name, inf.State.State)
				if inf.State.Err != nil {
					line += ": " + inf.State.Err.Error()
				}
				down = append(down, line)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(down) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(strings.Join(down, "\n") + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}
}

// channelJSON is one channel in /channels.
type channelJSON struct {
	Name               string         `json:"name"`
	Path               string         `json:"path"`
	Lazy               bool           `json:"lazy"`
	State              string         `json:"state"`
	Error              string         `json:"error,omitempty"`
	StateSince         time.Time      `json:"stateSince"`
	Clients            int            `json:"clients"`
	ClientsByTransport map[string]int `json:"clientsByTransport"`
	EventsIn           uint64         `json:"events"`
	SlowClients        uint64         `json:"slowClients"`
	Reconnects         uint64         `json:"reconnects"`
	LastEventID        string         `json:"lastEventId,omitempty"`
	LastEventTime      *time.Time     `json:"lastEventTime,omitempty"`
	EventNames         []string       `json:"eventNames"`
	MoreEventNames     bool           `json:"moreEventNames,omitempty"` // more names than eventNames lists were seen
	Replay             int            `json:"replay"`                   // events the replay buffer keeps: 0, no resume
	Holder             bool           `json:"holder,omitempty"`         // cluster mode: this instance holds the upstream
}

// routeJSON is one configured channel path in /channels, so that a page can
// open the channels that are not open yet (templated ones).
type routeJSON struct {
	Name      string   `json:"name"`
	Path      string   `json:"path"`
	Variables []string `json:"variables,omitempty"`
}

// channels lists the configured routes and the open channels as JSON.
func channels(hub *bridge.Hub, cfg *config.Config) http.HandlerFunc {
	routes := make([]routeJSON, 0, len(cfg.Channels))
	for _, ch := range cfg.Channels {
		routes = append(routes, routeJSON{Name: ch.Name, Path: ch.Path, Variables: templateVars(ch.Path)})
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		out := []channelJSON{}
		for _, c := range hub.Channels() {
			inf := c.Info()
			cj := channelJSON{
				Name: inf.Name, Path: inf.Path, Lazy: inf.Lazy, State: inf.State.State.String(),
				StateSince: inf.StateSince.UTC(), Clients: inf.Clients(),
				ClientsByTransport: make(map[string]int, len(bridge.Transports)),
				EventsIn:           inf.EventsIn, SlowClients: inf.SlowClients, Reconnects: inf.Reconnects,
				LastEventID: inf.LastEventID, EventNames: inf.EventNames, MoreEventNames: inf.MoreNames,
				Replay: inf.Replay, Holder: inf.Holder,
			}
			if cj.EventNames == nil {
				cj.EventNames = []string{}
			}
			for _, t := range bridge.Transports {
				cj.ClientsByTransport[t.String()] = inf.Stats.Clients[t]
			}
			if inf.State.Err != nil {
				cj.Error = inf.State.Err.Error()
			}
			if !inf.LastEventTime.IsZero() {
				t := inf.LastEventTime.UTC()
				cj.LastEventTime = &t
			}
			out = append(out, cj)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"routes": routes, "channels": out})
	}
}
