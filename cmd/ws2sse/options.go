package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/downstream"
	"github.com/ws2sse/ws2sse/internal/config"
	"github.com/ws2sse/ws2sse/upstream"
)

// This file turns the configuration into the packages' options.

func downstreamOptions(cfg *config.Config, log zerolog.Logger) (downstream.Options, error) {
	var auth *downstream.Authorizer
	if a := cfg.Auth; a != nil {
		ao, err := downstream.LoadAuthOptions(a.Tokens, a.JWTSecret, a.JWTPublicKey)
		if err != nil {
			return downstream.Options{}, err
		}
		if auth, err = downstream.NewAuthorizer(ao); err != nil {
			return downstream.Options{}, err
		}
	}
	retry := cfg.Downstream.Retry
	if retry == 0 {
		retry = -1 // "retry: 0"
	}
	return downstream.Options{
		Heartbeat:       cfg.Downstream.Heartbeat,
		Retry:           retry,
		WriteTimeout:    cfg.Downstream.WriteTimeout,
		MaxClients:      cfg.Server.MaxClients,
		MaxClientsPerIP: cfg.Server.MaxClientsPerIP,
		TrustedProxies:  cfg.Server.TrustedProxies,
		Auth:            auth,
		CORSOrigins:     cfg.Server.CORSOrigins,
		OverloadReject:  cfg.Server.Overload == config.OverloadReject,
		Logger:          log,
	}, nil
}

// disabled maps the configuration's "0s: off" to the options' "negative: off".
func disabled(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func upstreamOptions(ch config.Channel) upstream.Options {
	u := ch.Upstream
	h := make(http.Header, len(ch.Headers))
	for k, v := range ch.Headers {
		h.Set(k, v)
	}
	sub := make([][]byte, len(ch.Subscribe))
	for i, s := range ch.Subscribe {
		sub[i] = []byte(s)
	}
	return upstream.Options{
		URL:          ch.URL,
		Header:       h,
		Subprotocols: ch.Subprotocols,
		Subscribe:    sub,
		PingInterval: disabled(u.PingInterval),
		PongTimeout:  u.PongTimeout,
		ReadTimeout:  disabled(u.ReadTimeout),
		BackoffMin:   u.BackoffMin,
		BackoffMax:   u.BackoffMax,
		MaxMessage:   u.MaxMessage,
	}
}

// noAgeLimit stands for "replay_age = 0s": kept events never expire.
const noAgeLimit = 100 * 365 * 24 * time.Hour

func channelOptions(cfg *config.Config, ch config.Channel, log zerolog.Logger) bridge.Options {
	replay := ch.Replay
	if replay == 0 {
		replay = -1 // none
	}
	replayAge := ch.ReplayAge
	if replayAge == 0 {
		replayAge = noAgeLimit
	}
	linger := ch.Linger
	if linger == 0 {
		linger = -1 // disconnect as soon as the last client leaves
	}
	return bridge.Options{
		Name:            ch.Name,
		Path:            ch.Path,
		Upstream:        upstreamOptions(ch),
		Lazy:            ch.Lazy,
		Linger:          linger,
		EventField:      ch.EventField,
		DropBinary:      ch.Binary == "drop",
		Replay:          replay,
		ReplayAge:       replayAge,
		ReplayOnConnect: ch.ReplayOnConnect,
		Queue:           cfg.Downstream.Queue,
		StatusEvents:    ch.StatusEvents,
		Logger:          log,
	}
}

// newRouter routes every channel's path and the built-in endpoints.
func newRouter(cfg *config.Config, hub *bridge.Hub, ds *downstream.Server, cl *cluster, log zerolog.Logger) (*mux.Router, error) {
	r := mux.NewRouter()
	r.Path("/healthz").Methods(http.MethodGet, http.MethodHead).HandlerFunc(healthz)
	r.Path("/readyz").Methods(http.MethodGet, http.MethodHead).HandlerFunc(readyz(hub, cl.notReady))
	r.Path("/channels").Methods(http.MethodGet, http.MethodHead).HandlerFunc(channels(hub, cfg))
	var groups []string
	for _, ch := range cfg.Channels {
		if len(templateVars(ch.Path)) > 0 {
			groups = append(groups, ch.Name)
		}
	}
	r.Path("/metrics").Methods(http.MethodGet).Handler(metricsHandler(hub, groups))
	if cfg.Server.Dashboard {
		dash := dashboardHandler()
		for _, p := range config.DashboardPaths {
			r.Path(p).Handler(dash)
		}
	}
	for _, ch := range cfg.Channels {
		opts := channelOptions(cfg, ch, log)
		cl.channelOptions(&opts)
		if len(templateVars(ch.Path)) > 0 {
			name, open := templateRoute(hub, opts, ch.Path, ch.MaxChannels)
			r.Path(ch.Path).Handler(ds.Route(downstream.Route{Name: name, Open: open, Public: ch.Public}))
			continue
		}
		c, err := hub.Open(opts)
		if err != nil {
			return nil, err
		}
		r.Path(ch.Path).Handler(ds.Route(downstream.Route{
			Name:   func(*http.Request) string { return c.Name() },
			Open:   downstream.Static(c),
			Public: ch.Public,
		}))
	}
	return r, nil
}

// httpErrorLog sends net/http's own error lines (TLS handshakes, bad
// requests) to the logger.
type httpErrorLog struct{ log zerolog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	l.log.Warn().Str("source", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
