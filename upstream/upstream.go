// Package upstream maintains one WebSocket connection to an upstream feed, reconnecting with backoff.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

const (
	defaultPingInterval = 15 * time.Second
	defaultPongTimeout  = 5 * time.Second
	defaultReadTimeout  = 60 * time.Second
	defaultResetAfter   = 30 * time.Second
	defaultMaxMessage   = 1 << 20
	defaultDialTimeout  = 10 * time.Second

	// closeGrace is how long the goodbye close handshake on shutdown may
	// wait for an upstream that does not answer (see liveConn.closeLoop).
	closeGrace = time.Second
)

// Options configure Run. Zero values mean the documented defaults.
type Options struct {
	// URL is the feed to dial: ws:// or wss://. Required.
	URL string
	// Header is sent with the handshake. Credentials live here: they are
	// never logged.
	Header http.Header
	// Subprotocols are offered in the handshake.
	Subprotocols []string
	// Subscribe are text frames sent, in order, after every successful
	// connect, before the connection is reported up. Never logged.
	Subscribe [][]byte

	// PingInterval is how often a ping is sent (with ±10% jitter).
	// Default 15s; negative disables pings.
	PingInterval time.Duration
	// PongTimeout is how long a ping may go unanswered before the
	// connection counts as dead. Default 5s.
	PongTimeout time.Duration
	// ReadTimeout: no frame and no pong for this long means the connection
	// is dead. Default 60s; negative disables it.
	ReadTimeout time.Duration

	// BackoffMin and BackoffMax bound the delay between attempts; see
	// Backoff. Defaults 250ms and 30s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ResetAfter: a connection that stayed up this long resets the
	// backoff. Default 30s.
	ResetAfter time.Duration

	// MaxMessage is the largest frame accepted, in bytes; a larger one
	// closes the connection with 1009, then Run reconnects. Default 1 MiB.
	MaxMessage int64
	// DialTimeout bounds the handshake together with the subscribe frames.
	// Default 10s.
	DialTimeout time.Duration
	// HTTPClient is used for the handshake. Default http.DefaultClient.
	HTTPClient *http.Client

	// Logger is a sub-logger that already carries the channel name.
	// Default: no logs.
	Logger zerolog.Logger
	// OnFrame is called from the read loop for every data frame, in order.
	// It must not block for long: a slow OnFrame delays pongs and frames.
	OnFrame func(Frame)
	// OnState is called from Run's goroutine on every state change:
	// connecting, up, down (with the error and the backoff).
	OnState func(Status)
	// Rand returns values in [0, 1) for the jitter of backoff and pings; it
	// is called from one goroutine at a time. Default math/rand/v2 Float64.
	Rand func() float64
}

func (o Options) withDefaults() Options {
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = defaultPongTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = defaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = defaultBackoffMax
	}
	if o.ResetAfter <= 0 {
		o.ResetAfter = defaultResetAfter
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = defaultMaxMessage
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}

// Run connects and keeps the connection alive until ctx is cancelled; it
// returns nil then. It returns an error only for options it cannot work
// with (e.g. an invalid URL).
//
// Every dial failure and every lost connection is reported through OnState
// and logged once at warn, then retried after a backoff. No goroutine
// started by Run survives its return.
func Run(ctx context.Context, opts Options) error {
	u, err := parseURL(opts.URL)
	if err != nil {
		return err
	}
	opts = opts.withDefaults()
	r := &runner{
		opts:    opts,
		log:     opts.Logger,
		safeURL: redactURL(u),
		red:     newRedactor(opts.URL, u),
		backoff: Backoff{Min: opts.BackoffMin, Max: opts.BackoffMax, Rand: opts.Rand},
	}
	return r.run(ctx)
}

func parseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// A *url.Error quotes the whole URL; keep only what went wrong.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("%w %s: scheme must be ws or wss", ErrInvalidURL, redactURL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w %s: no host", ErrInvalidURL, redactURL(u))
	}
	return u, nil
}

// runner is the state of one Run; all of it is owned by Run's goroutine.
type runner struct {
	opts    Options
	log     zerolog.Logger
	safeURL string    // the URL, redacted, for logs
	red     *redactor // scrubs the URL's secrets from errors
	backoff Backoff
}

// run is the reconnect loop: dial, serve until the connection dies, report
// it down, wait out the backoff, again.
func (r *runner) run(ctx context.Context) error {
	for {
		r.report(Status{State: StateConnecting})
		upFor, err := r.connect(ctx)
		if ctx.Err() != nil {
			r.log.Debug().Msg("upstream stopped")
			return nil
		}
		if upFor >= r.opts.ResetAfter {
			r.backoff.Reset()
		}
		wait := r.backoff.Next()
		err = r.red.err(err)
		r.report(Status{State: StateDown, Err: err, RetryIn: wait})

		msg := "upstream down, reconnecting"
		if errors.Is(err, ErrMessageTooBig) {
			msg = fmt.Sprintf("upstream frame over max_message (%d bytes), reconnecting", r.opts.MaxMessage)
		}
		ev := r.log.Warn().Err(err).Dur("retry_in", wait)
		if upFor > 0 {
			ev = ev.Dur("up_for", upFor)
		}
		ev.Msg(msg)

		if !sleep(ctx, wait) {
			r.log.Debug().Msg("upstream stopped")
			return nil
		}
	}
}

// connect dials, subscribes and serves one connection until it dies. It
// returns how long the connection was up (zero if it never was) and why it
// ended.
func (r *runner) connect(ctx context.Context) (time.Duration, error) {
	conn, raw, err := r.dial(ctx)
	if err != nil {
		return 0, err
	}
	r.log.Info().
		Str("url", r.safeURL).
		Str("subprotocol", conn.Subprotocol()).
		Int("subscribe_frames", len(r.opts.Subscribe)).
		Msg("upstream connected")
	r.report(Status{State: StateUp})

	lc := newLiveConn(conn, raw, &r.opts)
	err = lc.serve(ctx)
	return time.Since(lc.start), err
}

// dial performs the handshake and sends the subscribe frames, all within
// DialTimeout. Besides the WebSocket it returns the connection under it, so
// that a close handshake that is never answered can be cut short (nil if
// the transport hid it).
func (r *runner) dial(ctx context.Context) (*websocket.Conn, io.Closer, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout)
	defer cancel()

	client := http.DefaultClient
	if r.opts.HTTPClient != nil {
		client = r.opts.HTTPClient
	}
	hc := *client
	catcher := &bodyCatcher{rt: hc.Transport}
	if catcher.rt == nil {
		catcher.rt = http.DefaultTransport
	}
	hc.Transport = catcher

	conn, _, err := websocket.Dial(ctx, r.opts.URL, &websocket.DialOptions{
		HTTPClient:      &hc,
		HTTPHeader:      r.opts.Header,
		Subprotocols:    r.opts.Subprotocols,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to dial upstream: %w", err)
	}
	conn.SetReadLimit(r.opts.MaxMessage)

	for i, frame := range r.opts.Subscribe {
		if err := conn.Write(ctx, websocket.MessageText, frame); err != nil {
			conn.CloseNow()
			return nil, nil, fmt.Errorf("failed to send subscribe frame %d of %d: %w", i+1, len(r.opts.Subscribe), err)
		}
	}
	return conn, catcher.body, nil
}

// bodyCatcher remembers the body of a handshake response, which is the
// connection itself once the protocol is switched.
type bodyCatcher struct {
	rt   http.RoundTripper
	body io.Closer // set during Dial, read after it returned
}

func (b *bodyCatcher) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		b.body = resp.Body
	}
	return resp, err
}

func (r *runner) report(st Status) {
	if r.opts.OnState != nil {
		r.opts.OnState(st)
	}
}
