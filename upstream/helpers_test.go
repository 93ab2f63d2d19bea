package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// waitTimeout bounds every wait for something that should happen soon.
const waitTimeout = wstest.WaitTimeout

// srvConn is one connection accepted by the test upstream.
type srvConn struct {
	*websocket.Conn
	req   *http.Request
	n     int            // 1 for the first connection
	pings chan time.Time // when each ping arrived
}

// readSubscribe reads n text frames, the subscribe frames.
func (c *srvConn) readSubscribe(ctx context.Context, n int) ([]string, error) {
	var got []string
	for range n {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return got, err
		}
		if typ != websocket.MessageText {
			return got, io.ErrUnexpectedEOF
		}
		got = append(got, string(b))
	}
	return got, nil
}

// discard reads until the connection ends, which answers pings, and
// returns how it ended.
func (c *srvConn) discard(ctx context.Context) error {
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

// wsServer is a real WebSocket upstream on loopback.
type wsServer struct {
	*httptest.Server
	conns chan *srvConn // every accepted connection
	url   string        // ws:// URL of /feed
}

// newWSServer starts an upstream whose connections are served by handle;
// handle's ctx is cancelled when the test ends.
func newWSServer(t *testing.T, handle func(ctx context.Context, c *srvConn)) *wsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &wsServer{conns: make(chan *srvConn, 100)}
	var (
		mu sync.Mutex
		n  int
	)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pings := make(chan time.Time, 1000)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols: []string{"feed.v1"},
			OnPingReceived: func(context.Context, []byte) bool {
				select {
				case pings <- time.Now():
				default:
				}
				return true
			},
		})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		mu.Lock()
		n++
		sc := &srvConn{Conn: c, req: r, n: n, pings: pings}
		mu.Unlock()
		s.conns <- sc
		handle(ctx, sc)
	}))
	s.url = "ws" + strings.TrimPrefix(s.URL, "http") + "/feed"
	t.Cleanup(s.Close)
	t.Cleanup(cancel) // runs first: handlers return, then the server closes
	return s
}

// client runs Run in the background and records what it reports.
type client struct {
	frames chan Frame
	states chan stateAt
	cancel context.CancelFunc
	done   chan error

	stopOnce sync.Once
	stopErr  error
	stopTook time.Duration
}

// startClient runs Run with opts; it is stopped when the test ends, before
// the servers close.
func startClient(t *testing.T, opts Options) *client {
	t.Helper()
	c := &client{
		frames: make(chan Frame, 10000),
		states: make(chan stateAt, 10000),
		done:   make(chan error, 1),
	}
	if opts.OnFrame == nil {
		opts.OnFrame = func(f Frame) { c.frames <- f }
	}
	opts.OnState = func(s Status) { c.states <- stateAt{s, time.Now()} }
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- Run(ctx, opts) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop cancels Run and waits for it, failing the test if it hangs.
func (c *client) stop(t *testing.T) error {
	t.Helper()
	c.stopOnce.Do(func() {
		start := time.Now()
		c.cancel()
		select {
		case c.stopErr = <-c.done:
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return after its context was cancelled")
		}
		c.stopTook = time.Since(start)
	})
	return c.stopErr
}

// stateAt is a reported status and when it was reported.
type stateAt struct {
	Status
	at time.Time
}

// nextState returns the next reported status.
func (c *client) nextState(t *testing.T) Status {
	t.Helper()
	return recv(t, c.states, "a state change").Status
}

// expectState returns the next reported status and fails unless it is in
// state want.
func (c *client) expectState(t *testing.T, want State) Status {
	t.Helper()
	return c.expectStateAt(t, want).Status
}

// expectStateAt is expectState with the time the status was reported.
func (c *client) expectStateAt(t *testing.T, want State) stateAt {
	t.Helper()
	st := recv(t, c.states, "a state change")
	if st.State != want {
		t.Fatalf("state = %v (err %v), want %v", st.State, st.Err, want)
	}
	return st
}

// expectDead waits for a connection to come up and then be declared dead
// with an error that is want, after typical or so but no sooner than least,
// and for the next connection to come up.
func (c *client) expectDead(t *testing.T, want error, least, typical time.Duration) {
	t.Helper()
	c.expectState(t, StateConnecting)
	up := c.expectStateAt(t, StateUp)
	down := c.expectStateAt(t, StateDown)
	took := down.at.Sub(up.at) // as reported, however late this goroutine reads them
	if !errors.Is(down.Err, want) {
		t.Errorf("down error = %v, want %v", down.Err, want)
	}
	// Wide margins above, none below.
	if took < least || took > 5*time.Second {
		t.Errorf("connection declared dead after %v, want about %v", took, typical)
	}
	c.expectState(t, StateConnecting)
	c.expectState(t, StateUp)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// logLines returns the JSON log lines in b.
func logLines(t *testing.T, b *wstest.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// testLogger logs to t and, if buf is not nil, to buf, as a channel's
// sub-logger would.
func testLogger(t *testing.T, buf *wstest.Buffer) zerolog.Logger {
	var also []io.Writer
	if buf != nil {
		also = append(also, buf)
	}
	return wstest.Logger(t, also...).Level(zerolog.DebugLevel).With().Str("channel", "prices").Logger()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return strconv.Itoa(port)
}
