// Package downstream serves channels to clients over Server-Sent Events and WebSocket.
package downstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	sseenc "github.com/ws2sse/ws2sse/internal/sse"
)

// Options configure a Server.
type Options struct {
	// Heartbeat is how long a stream may stay silent before a comment line
	// (SSE) is sent. Default 15s.
	Heartbeat time.Duration
	// Retry is the reconnection delay sent when an SSE stream opens.
	// Default 2s; negative sends "retry: 0".
	Retry time.Duration
	// WriteTimeout bounds one write to one client. Default 10s.
	WriteTimeout time.Duration
	// ShutdownRetry is the reconnection delay sent to SSE clients when the
	// server shuts down; each client gets a random delay between it and
	// twice it, so they do not all come back at once. Default 500ms.
	ShutdownRetry time.Duration
	// OverloadReject answers a client over a limit with 503 and
	// Retry-After; by default an SSE client is sent a long retry instead.
	OverloadReject bool
	// MaxClients caps the clients of every transport together; 0: no cap.
	MaxClients int
	// MaxClientsPerIP caps the clients of one IP address; 0: no cap.
	MaxClientsPerIP int
	// TrustedProxies are the proxies whose X-Forwarded-For header names
	// the client's address for MaxClientsPerIP. Default none: the peer's
	// address counts.
	TrustedProxies []netip.Prefix
	// Auth, if set, requires a token for every route that is not public.
	Auth *Authorizer
	// CORSOrigins are the origins allowed to read streams from a browser
	// page of another origin ("https://app.example.com"); "*" allows any
	// (without credentials). Same-origin requests are always allowed.
	CORSOrigins []string
	// Logger receives one line per client session and the server's errors.
	Logger zerolog.Logger
}

// Server serves channels to clients.
type Server struct {
	opts Options
	log  zerolog.Logger

	anyOrigin bool
	origins   map[string]bool // lower-case "scheme://host[:port]"

	limits *limiter

	streams sync.WaitGroup // streams that outlive their handler, and SSE shards
	hangups hangups        // notices taken-over clients that hang up

	fanMu   sync.Mutex
	fanouts map[*bridge.Channel]*fanout // channels with running shards
	spills  atomic.Uint64               // streams a shard handed to a goroutine for a full socket

	shutdown    <-chan struct{}    // closed by Shutdown: shutdownCtx.Done()
	shutdownCtx context.Context    // cancelled by Shutdown, for context.AfterFunc
	endShutdown context.CancelFunc // cancels shutdownCtx
	closeCtx    context.Context    // cancelled by Close; WebSocket streams' contexts derive from it
	cutOff      context.CancelFunc
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Retry == 0 {
		opts.Retry = 2 * time.Second
	} else if opts.Retry < 0 {
		opts.Retry = 0
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.ShutdownRetry <= 0 {
		opts.ShutdownRetry = 500 * time.Millisecond
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		origins: make(map[string]bool),
		limits:  newLimiter(opts.MaxClients, opts.MaxClientsPerIP, opts.TrustedProxies),
		fanouts: make(map[*bridge.Channel]*fanout),
	}
	s.shutdownCtx, s.endShutdown = context.WithCancel(context.Background())
	s.shutdown = s.shutdownCtx.Done()
	s.closeCtx, s.cutOff = context.WithCancel(context.Background())
	s.hangups.wg = &s.streams
	for _, o := range opts.CORSOrigins {
		if o == "*" {
			s.anyOrigin = true
		}
		s.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return s
}

// Shutdown ends every stream: SSE clients are first told to reconnect soon,
// to another instance or to this one once it is back. Handlers return
// promptly after it; Wait waits for the streams that outlive theirs.
func (s *Server) Shutdown() {
	s.endShutdown()
}

// Close ends every stream at once, as Shutdown does but without waiting for
// anything: WebSocket connections are dropped without finishing the close
// handshake, and a write stuck on a client that stopped reading fails now.
// Call it when the grace for Shutdown has run out; Wait then returns soon.
func (s *Server) Close() {
	s.Shutdown()
	s.cutOff()
}

// Wait waits for every stream, and for the handlers that serve one. Call
// it after Shutdown, once the http.Server has stopped taking requests.
func (s *Server) Wait() {
	s.streams.Wait()
}

// Resolver finds the channel a request is for. It returns ErrNotFound when
// there is none, and bridge.ErrTooManyChannels when the channel cannot be
// opened now.
type Resolver func(*http.Request) (*bridge.Channel, error)

// ErrNotFound is returned by a Resolver for a request that names no channel.
var ErrNotFound = errors.New("no such channel")

// Static returns a Resolver that always finds ch.
func Static(ch *bridge.Channel) Resolver {
	return func(*http.Request) (*bridge.Channel, error) { return ch, nil }
}

// Route is one configured channel path.
type Route struct {
	// Name returns the name of the channel a request is for. Access
	// control is checked against it before any channel is opened.
	Name func(*http.Request) string
	// Open returns the request's channel, opening it if need be.
	Open Resolver
	// Public routes need no token, even with Options.Auth.
	Public bool
}

// Route returns the handler that serves a route's channels, over SSE or,
// for an Upgrade request, WebSocket. In order, a request is checked for its
// origin, its method, its token and the client limits.
func (s *Server) Route(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowed, credentials := s.cors(w, r)
		if !allowed {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		switch r.Method {
		case http.MethodOptions:
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodGet, http.MethodHead:
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if s.opts.Auth != nil && !rt.Public {
			var name string
			if rt.Name != nil {
				name = rt.Name(r)
			}
			if status, reason := s.opts.Auth.check(r, name, credentials); status != 0 {
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="ws2sse"`)
				}
				http.Error(w, reason, status)
				return
			}
		}
		websocket := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
		if r.Method == http.MethodHead && !websocket {
			setSSEHeaders(w.Header())
			w.WriteHeader(http.StatusOK)
			return
		}
		ip := s.limits.clientIP(r)
		if !s.limits.acquire(ip) {
			s.overload(w, r, !websocket)
			return
		}
		release := func() { s.limits.release(ip) }
		if websocket {
			s.serveWS(w, r, rt.Open, release)
			return
		}
		s.serveSSE(w, r, rt.Open, release)
	})
}

// cors sets the CORS headers for r and reports whether its origin may use
// the stream, and whether with the browser's credentials (cookies). A
// request with no Origin header, or from the server's own origin, is always
// allowed with them; an origin let in only by "*" never is. A browser
// enforces that for SSE, but not for a WebSocket, so the token check is
// told too: it ignores the cookie then, or any site could open a stream
// with its visitor's cookie (cross-site WebSocket hijacking).
func (s *Server) cors(w http.ResponseWriter, r *http.Request) (allowed, credentials bool) {
	origin := r.Header.Get("Origin")
	if origin == "" || sameOrigin(origin, r) {
		return true, true
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	switch {
	case s.origins[strings.ToLower(origin)]:
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		credentials = true
	case s.anyOrigin:
		// Any origin, and so never with credentials.
		h.Set("Access-Control-Allow-Origin", "*")
	default:
		return false, false
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Cache-Control, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
	}
	return true, credentials
}

func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// subscribe resolves the request's channel and subscribes to it. A channel
// can close between the two (a templated channel that just went idle); it is
// then resolved again.
func (s *Server) subscribe(r *http.Request, resolve Resolver, t bridge.Transport, onEnd func(error)) (*bridge.Channel, *bridge.Subscription, error) {
	for attempt := 0; ; attempt++ {
		ch, err := resolve(r)
		if err != nil {
			return nil, nil, err
		}
		sub, err := ch.Subscribe(bridge.SubscribeOptions{Transport: t, LastEventID: resumeID(r), OnEnd: onEnd})
		if err == nil || !errors.Is(err, bridge.ErrClosed) || attempt == 2 {
			return ch, sub, err
		}
	}
}

// refuse answers a request whose channel could not be subscribed to.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error, sse bool) {
	switch {
	case errors.Is(err, ErrNotFound):
		http.NotFound(w, r)
	case errors.Is(err, bridge.ErrTooManyChannels):
		s.overload(w, r, sse)
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "channel unavailable", http.StatusServiceUnavailable)
	}
}

// overload turns away a client over a limit. With OverloadReject, or on
// WebSocket, it answers 503 with Retry-After. Otherwise an SSE client gets
// a stream with a long retry and one overload event, so that EventSource
// comes back later instead of giving up as it does on an error status.
//
// Like every session, it is logged when it ends; the path stands for the
// channel, which may not be open. The query is left out: it may hold a
// token.
func (s *Server) overload(w http.ResponseWriter, r *http.Request, sse bool) {
	transport := "websocket"
	if sse {
		transport = "sse"
	}
	s.log.Info().Str("path", r.URL.Path).Str("transport", transport).Str("remote", r.RemoteAddr).
		Dur("duration", 0).Uint64("events", 0).Str("reason", "overload").Msg("client session ended")
	wait := 5*time.Second + rand.N(10*time.Second)
	if !sse || s.opts.OverloadReject {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	setSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	b := sseenc.AppendRetry(nil, wait)
	b = sseenc.AppendEvent(b, "", "overload", []byte("too many connections"))
	_, _ = w.Write(b)
}

// jitter returns d plus up to a tenth more, so that timers of many clients
// started together spread out.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

// resumeID returns the id a client resumes from: the Last-Event-ID header,
// else the lastEventId query parameter. An id over MaxResumeID bytes is cut
// there; it cannot match any event and so gets a gap.
func resumeID(r *http.Request) string {
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("lastEventId")
	}
	if len(id) > MaxResumeID {
		id = id[:MaxResumeID]
	}
	return id
}

// MaxResumeID is the longest resume id taken from a client; a longer one
// counts as unknown.
const MaxResumeID = 128
