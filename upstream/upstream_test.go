package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

func TestFramesArriveInOrder(t *testing.T) {
	type frame struct {
		typ  websocket.MessageType
		data []byte
	}
	want := []frame{
		{websocket.MessageText, []byte(`{"type":"tick","price":1}`)},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xfe, 0xff}},
		{websocket.MessageText, []byte("ünïcödé ✓\r\nsecond line")},
		{websocket.MessageText, []byte{}},
		{websocket.MessageBinary, bytes.Repeat([]byte{0xab}, 100_000)},
	}
	for i := range 200 {
		want = append(want, frame{websocket.MessageText, fmt.Appendf(nil, "frame %d", i)})
	}

	subscribed := make(chan []string, 1)
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		got, err := c.readSubscribe(ctx, 2)
		if err != nil {
			return
		}
		subscribed <- got
		for _, f := range want {
			if err := c.Write(ctx, f.typ, f.data); err != nil {
				return
			}
		}
		c.discard(ctx)
	})

	cl := startClient(t, Options{
		URL:          srv.url,
		Header:       http.Header{"Authorization": {"Bearer t0ken"}, "X-Feed": {"a", "b"}},
		Subprotocols: []string{"feed.v1"},
		Subscribe:    [][]byte{[]byte(`{"op":"subscribe","args":["prices"]}`), []byte(`{"op":"ping"}`)},
		Logger:       testLogger(t, nil),
	})

	sc := recv(t, srv.conns, "a connection")
	if got := sc.req.Header.Get("Authorization"); got != "Bearer t0ken" {
		t.Errorf("server saw Authorization %q, want %q", got, "Bearer t0ken")
	}
	if got := sc.req.Header.Values("X-Feed"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("server saw X-Feed %q, want [a b]", got)
	}
	if got := sc.Subprotocol(); got != "feed.v1" {
		t.Errorf("negotiated subprotocol %q, want feed.v1", got)
	}
	if got := recv(t, subscribed, "subscribe frames"); !slices.Equal(got, []string{`{"op":"subscribe","args":["prices"]}`, `{"op":"ping"}`}) {
		t.Errorf("server got subscribe frames %q", got)
	}

	cl.expectState(t, StateConnecting)
	if st := cl.expectState(t, StateUp); st.Err != nil || st.RetryIn != 0 {
		t.Errorf("up status = %+v, want no error and no RetryIn", st)
	}

	var got []Frame
	for range want {
		got = append(got, recv(t, cl.frames, "a frame"))
	}
	for i, f := range got {
		if f.Binary != (want[i].typ == websocket.MessageBinary) || !bytes.Equal(f.Data, want[i].data) {
			t.Fatalf("frame %d = {Binary: %v, %d bytes %.40q}, want {%v, %d bytes %.40q}",
				i, f.Binary, len(f.Data), f.Data, want[i].typ, len(want[i].data), want[i].data)
		}
	}
	// Each frame is the receiver's own: scribbling on one changes no other.
	clear(got[0].Data)
	if !bytes.Equal(got[len(got)-1].Data, want[len(want)-1].data) {
		t.Error("frames share memory")
	}

	if err := cl.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	select {
	case st := <-cl.states:
		t.Errorf("unexpected state change %+v", st)
	default:
	}
}

func TestReconnectResendsSubscribe(t *testing.T) {
	subscribe := []string{`{"op":"auth"}`, `{"op":"subscribe","args":["a"]}`, `{"op":"subscribe","args":["b"]}`}
	subscribed := make(chan []string, 10)
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		got, err := c.readSubscribe(ctx, len(subscribe))
		if err != nil {
			return
		}
		subscribed <- got
		if c.n == 1 {
			c.Close(websocket.StatusServiceRestart, "maintenance")
			return
		}
		c.Write(ctx, websocket.MessageText, []byte("live"))
		c.discard(ctx)
	})

	var frames [][]byte
	for _, s := range subscribe {
		frames = append(frames, []byte(s))
	}
	cl := startClient(t, Options{
		URL:        srv.url,
		Subscribe:  frames,
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 20 * time.Millisecond,
		Logger:     testLogger(t, nil),
	})

	for i := range 2 {
		if got := recv(t, subscribed, "subscribe frames"); !slices.Equal(got, subscribe) {
			t.Errorf("connection %d: server got subscribe frames %q, want %q", i+1, got, subscribe)
		}
	}
	if f := recv(t, cl.frames, "a frame"); string(f.Data) != "live" {
		t.Errorf("frame = %q, want live", f.Data)
	}

	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	down := cl.expectState(t, StateDown)
	if !errors.Is(down.Err, ErrClosed) || !strings.Contains(down.Err.Error(), "maintenance") {
		t.Errorf("down error = %v, want ErrClosed with the upstream's reason", down.Err)
	}
	if down.RetryIn < 5*time.Millisecond || down.RetryIn > 20*time.Millisecond {
		t.Errorf("RetryIn = %v, want within [5ms, 20ms]", down.RetryIn)
	}
	if st := cl.expectState(t, StateConnecting); st.Err != nil {
		t.Errorf("connecting status carries error %v", st.Err)
	}
	cl.expectState(t, StateUp)
}

func TestBackoffResetsAfterHealthyConnection(t *testing.T) {
	const resetAfter = 300 * time.Millisecond
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		switch c.n {
		case 1, 2, 3: // hang up at once
			c.Close(websocket.StatusTryAgainLater, "busy")
		case 4: // stay up past resetAfter, then hang up
			select {
			case <-time.After(2 * resetAfter):
			case <-ctx.Done():
			}
			c.CloseNow()
		default:
			c.discard(ctx)
		}
	})
	cl := startClient(t, Options{
		URL:        srv.url,
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: time.Second,
		ResetAfter: resetAfter,
		Rand:       constRand(1),
		Logger:     testLogger(t, nil),
	})
	var retries []time.Duration
	for range 4 {
		cl.expectState(t, StateConnecting)
		cl.expectState(t, StateUp)
		retries = append(retries, cl.expectState(t, StateDown).RetryIn)
	}
	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 10 * time.Millisecond}
	if !slices.Equal(retries, want) {
		t.Errorf("RetryIn = %v, want %v: growing, then reset by the healthy connection", retries, want)
	}
}

func TestUnansweredPingReconnects(t *testing.T) {
	const (
		pingInterval = 50 * time.Millisecond
		pongTimeout  = 200 * time.Millisecond
	)
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		if c.n == 1 {
			<-ctx.Done() // never reads, so never answers a ping
			return
		}
		c.discard(ctx)
	})
	cl := startClient(t, Options{
		URL:          srv.url,
		PingInterval: pingInterval,
		PongTimeout:  pongTimeout,
		ReadTimeout:  -1,
		BackoffMin:   5 * time.Millisecond,
		BackoffMax:   5 * time.Millisecond,
		Logger:       testLogger(t, nil),
	})

	// The first ping goes out after about pingInterval and gets pongTimeout
	// to be answered.
	cl.expectDead(t, ErrPongTimeout, pongTimeout, pingInterval+pongTimeout)
	if c := recv(t, srv.conns, "first connection"); c.n != 1 {
		t.Fatal("connections out of order")
	}
	recv(t, srv.conns, "a second connection")
}

func TestSilenceReconnectsAfterReadTimeout(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		c.discard(ctx) // answers pings, sends nothing
	})
	cl := startClient(t, Options{
		URL:          srv.url,
		PingInterval: -1,
		ReadTimeout:  readTimeout,
		BackoffMin:   5 * time.Millisecond,
		BackoffMax:   5 * time.Millisecond,
		Logger:       testLogger(t, nil),
	})

	cl.expectDead(t, ErrReadTimeout, readTimeout, readTimeout)
	recv(t, srv.conns, "first connection")
	recv(t, srv.conns, "a second connection")
}

func TestActivityKeepsConnection(t *testing.T) {
	const (
		readTimeout = 250 * time.Millisecond
		span        = 4 * readTimeout // observed activity without a reconnect
	)
	tests := []struct {
		name         string
		pingInterval time.Duration
		handle       func(ctx context.Context, c *srvConn, seen chan<- time.Time)
	}{
		{
			name:         "pongs",
			pingInterval: 20 * time.Millisecond,
			handle: func(ctx context.Context, c *srvConn, seen chan<- time.Time) {
				go func() {
					for {
						select {
						case at := <-c.pings:
							seen <- at
						case <-ctx.Done():
							return
						}
					}
				}()
				c.discard(ctx)
			},
		},
		{
			name:         "frames",
			pingInterval: -1,
			handle: func(ctx context.Context, c *srvConn, seen chan<- time.Time) {
				ctx = c.CloseRead(ctx) // answers pings and the goodbye
				for {
					if err := c.Write(ctx, websocket.MessageText, []byte("tick")); err != nil {
						return
					}
					seen <- time.Now()
					select {
					case <-time.After(20 * time.Millisecond):
					case <-ctx.Done():
						return
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(chan time.Time, 10000)
			srv := newWSServer(t, func(ctx context.Context, c *srvConn) { tt.handle(ctx, c, seen) })
			cl := startClient(t, Options{
				URL:          srv.url,
				PingInterval: tt.pingInterval,
				PongTimeout:  time.Second,
				ReadTimeout:  readTimeout,
				OnFrame:      func(Frame) {},
				Logger:       testLogger(t, nil),
			})
			cl.expectState(t, StateConnecting)
			cl.expectState(t, StateUp)
			first := recv(t, seen, "activity")
			for at := first; at.Sub(first) < span; {
				at = recv(t, seen, "activity")
			}
			if err := cl.stop(t); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			select {
			case st := <-cl.states:
				t.Errorf("connection with activity changed state: %v (%v)", st.State, st.Err)
			default:
			}
			recv(t, srv.conns, "the connection")
			select {
			case <-srv.conns:
				t.Error("connection with activity was replaced")
			default:
			}
		})
	}
}

func TestFrameOverMaxMessage(t *testing.T) {
	const maxMessage = 1024
	closed := make(chan websocket.StatusCode, 1)
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		if c.n == 1 {
			c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("a"), maxMessage))
			c.Write(ctx, websocket.MessageBinary, bytes.Repeat([]byte("b"), maxMessage+1))
			closed <- websocket.CloseStatus(c.discard(ctx))
			return
		}
		c.Write(ctx, websocket.MessageText, []byte("after"))
		c.discard(ctx)
	})
	var logs wstest.Buffer
	cl := startClient(t, Options{
		URL:        srv.url,
		MaxMessage: maxMessage,
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 5 * time.Millisecond,
		Logger:     testLogger(t, &logs),
	})

	if f := recv(t, cl.frames, "a frame"); len(f.Data) != maxMessage {
		t.Errorf("first frame has %d bytes, want %d", len(f.Data), maxMessage)
	}
	if f := recv(t, cl.frames, "a frame"); string(f.Data) != "after" {
		t.Errorf("second frame = %.20q, want the first of the new connection", f.Data)
	}
	if code := recv(t, closed, "close status"); code != websocket.StatusMessageTooBig {
		t.Errorf("server saw close status %v, want %v", code, websocket.StatusMessageTooBig)
	}
	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	if down := cl.expectState(t, StateDown); !errors.Is(down.Err, ErrMessageTooBig) {
		t.Errorf("down error = %v, want ErrMessageTooBig", down.Err)
	}
	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	cl.stop(t)

	var found bool
	for _, l := range logLines(t, &logs) {
		if l["message"] == "upstream frame over max_message (1024 bytes), reconnecting" {
			found = true
			if l["level"] != "warn" || l["channel"] != "prices" || l["retry_in"] == nil {
				t.Errorf("log line %v: want level warn, channel prices and retry_in", l)
			}
		}
	}
	if !found {
		t.Errorf("no log line about the frame over max_message in:\n%s", logs.String())
	}
}

func TestDialFailureIsRedacted(t *testing.T) {
	rawURL := "ws://user:secret@127.0.0.1:" + closedPort(t) + "/x?token=secret&v=2"
	var logs wstest.Buffer
	cl := startClient(t, Options{
		URL:        rawURL,
		Header:     http.Header{"Authorization": {"Bearer secret"}},
		Subscribe:  [][]byte{[]byte(`{"key":"secret"}`)},
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 10 * time.Millisecond,
		Logger:     testLogger(t, &logs),
	})

	for range 3 {
		cl.expectState(t, StateConnecting)
		down := cl.expectState(t, StateDown)
		msg := down.Err.Error()
		if strings.Contains(msg, "secret") {
			t.Fatalf("Status.Err leaks a secret: %s", msg)
		}
		// The URL was in the error, redacted.
		if !strings.Contains(msg, "REDACTED@127.0.0.1:") || !strings.Contains(msg, "/x?token=REDACTED&v=REDACTED") {
			t.Errorf("Status.Err = %s, want the redacted URL in it", msg)
		}
		if !errors.Is(down.Err, syscall.ECONNREFUSED) {
			t.Errorf("Status.Err = %v, want it to match ECONNREFUSED", down.Err)
		}
		if down.RetryIn < 5*time.Millisecond || down.RetryIn > 10*time.Millisecond {
			t.Errorf("RetryIn = %v, want within [5ms, 10ms]", down.RetryIn)
		}
	}
	cl.stop(t)

	out := logs.String()
	if strings.Contains(out, "secret") {
		t.Errorf("logs leak a secret:\n%s", out)
	}
	if !strings.Contains(out, "upstream down, reconnecting") {
		t.Errorf("no log line about the failed dial in:\n%s", out)
	}
}

func TestCredentialsReachUpstreamButNotLogs(t *testing.T) {
	type seen struct{ user, pass, token, auth, sub string }
	got := make(chan seen, 10)
	srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
		sub, err := c.readSubscribe(ctx, 1)
		if err != nil {
			return
		}
		user, pass, _ := c.req.BasicAuth()
		got <- seen{user, pass, c.req.URL.Query().Get("token"), c.req.Header.Get("X-Api-Key"), sub[0]}
		if c.n == 1 {
			c.Close(websocket.StatusGoingAway, "restart")
			return
		}
		c.discard(ctx)
	})
	rawURL := strings.Replace(srv.url, "ws://", "ws://user:secret-pw@", 1) + "?token=secret-token"
	var logs wstest.Buffer
	cl := startClient(t, Options{
		URL:        rawURL,
		Header:     http.Header{"X-Api-Key": {"secret-key"}},
		Subscribe:  [][]byte{[]byte(`{"auth":"secret-sub"}`)},
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 5 * time.Millisecond,
		Logger:     testLogger(t, &logs),
	})
	want := seen{"user", "secret-pw", "secret-token", "secret-key", `{"auth":"secret-sub"}`}
	for range 2 {
		if s := recv(t, got, "a subscribed connection"); s != want {
			t.Errorf("upstream saw %+v, want %+v", s, want)
		}
	}
	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	if down := cl.expectState(t, StateDown); strings.Contains(down.Err.Error(), "secret") {
		t.Errorf("Status.Err leaks a secret: %v", down.Err)
	}
	cl.expectState(t, StateConnecting)
	cl.expectState(t, StateUp)
	cl.stop(t)

	out := logs.String()
	if strings.Contains(out, "secret") {
		t.Errorf("logs leak a secret:\n%s", out)
	}
	wantURL := strings.Replace(srv.url, "ws://", "ws://REDACTED@", 1) + "?token=REDACTED"
	var connected int
	for _, l := range logLines(t, &logs) {
		if l["message"] == "upstream connected" {
			connected++
			if l["level"] != "info" || l["url"] != wantURL || l["subscribe_frames"] != 1.0 || l["subprotocol"] != "" {
				t.Errorf("log line %v: want level info, url %s, subscribe_frames 1", l, wantURL)
			}
		}
	}
	if connected != 2 {
		t.Errorf("%d upstream connected lines, want 2:\n%s", connected, out)
	}
}

func TestCancel(t *testing.T) {
	t.Run("connected", func(t *testing.T) {
		closed := make(chan error, 1)
		srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
			closed <- c.discard(ctx)
		})
		var logs wstest.Buffer
		cl := startClient(t, Options{URL: srv.url, Logger: testLogger(t, &logs)})
		cl.expectState(t, StateConnecting)
		cl.expectState(t, StateUp)
		if err := cl.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if cl.stopTook > 5*time.Second {
			t.Errorf("Run took %v to return", cl.stopTook)
		}
		err := recv(t, closed, "the server's read error")
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Errorf("server saw %v, want close status %v", err, websocket.StatusGoingAway)
		}
		if out := logs.String(); strings.Contains(out, `"level":"warn"`) || strings.Contains(out, `"level":"error"`) {
			t.Errorf("a clean stop logged a warning or an error:\n%s", out)
		}
	})
	t.Run("unresponsive upstream", func(t *testing.T) {
		srv := newWSServer(t, func(ctx context.Context, c *srvConn) {
			<-ctx.Done() // never reads: the goodbye is never answered
		})
		cl := startClient(t, Options{URL: srv.url, Logger: testLogger(t, nil)})
		cl.expectState(t, StateConnecting)
		cl.expectState(t, StateUp)
		if err := cl.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if cl.stopTook < closeGrace || cl.stopTook > closeGrace+4*time.Second {
			t.Errorf("Run took %v to return, want about closeGrace (%v)", cl.stopTook, closeGrace)
		}
	})
	t.Run("backing off", func(t *testing.T) {
		cl := startClient(t, Options{
			URL:        "ws://127.0.0.1:" + closedPort(t) + "/x",
			BackoffMin: time.Hour,
			Logger:     testLogger(t, nil),
		})
		cl.expectState(t, StateConnecting)
		if st := cl.expectState(t, StateDown); st.RetryIn != time.Hour {
			t.Errorf("RetryIn = %v, want 1h", st.RetryIn)
		}
		if err := cl.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if cl.stopTook > 5*time.Second {
			t.Errorf("Run took %v to return", cl.stopTook)
		}
	})
	t.Run("dialing", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-r.Context().Done() // never completes the handshake
		}))
		defer srv.Close()
		cl := startClient(t, Options{URL: "ws" + strings.TrimPrefix(srv.URL, "http"), Logger: testLogger(t, nil)})
		cl.expectState(t, StateConnecting)
		recv(t, arrived, "the handshake request")
		if err := cl.stop(t); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if cl.stopTook > 5*time.Second {
			t.Errorf("Run took %v to return", cl.stopTook)
		}
	})
}

func TestInvalidOptions(t *testing.T) {
	for _, rawURL := range []string{
		"",
		"http://example.com/feed",
		"ws:///no-host",
		"ws://user:secret@[::1/x?token=secret",
		"wss://user:secret@example.com:port/x?token=secret",
		"feed.example.com/x?token=secret",
	} {
		called := false
		err := Run(context.Background(), Options{URL: rawURL, OnState: func(Status) { called = true }})
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Run(%q) = %v, want ErrInvalidURL", rawURL, err)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Run(%q) error leaks a secret: %v", rawURL, err)
		}
		if called {
			t.Errorf("Run(%q) reported a state", rawURL)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateConnecting: "connecting", StateUp: "up", StateDown: "down", State(7): "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
