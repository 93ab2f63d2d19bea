package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

// waitFor bounds every wait of these tests; none should come near it.
const waitFor = wstest.WaitTimeout

// feed is a WebSocket upstream on loopback. Each connection it accepts is
// handed to the test, which sends frames through it.
type feed struct {
	srv   *httptest.Server
	conns chan *feedConn // accepted connections, in order
	quit  chan struct{}  // closed at cleanup: every connection ends
	wg    sync.WaitGroup // handlers

	mu    sync.Mutex
	paths map[string]int // connections accepted per path; guarded by mu
}

// feedConn is one upstream connection, seen from the server.
type feedConn struct {
	path   string
	frames chan feedFrame // the handler writes what it receives here
	hangup chan struct{}  // closed by the test: the server closes the connection
	gone   chan struct{}  // closed once the connection has ended
}

type feedFrame struct {
	binary bool
	data   []byte
}

func newFeed(t testing.TB) *feed {
	f := &feed{
		conns: make(chan *feedConn, 16),
		quit:  make(chan struct{}),
		paths: make(map[string]int),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.quit)
		f.srv.Close()
		f.wg.Wait()
	})
	return f
}

func (f *feed) serve(w http.ResponseWriter, r *http.Request) {
	f.wg.Add(1)
	defer f.wg.Done()
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	fc := &feedConn{
		path:   r.URL.Path,
		frames: make(chan feedFrame),
		hangup: make(chan struct{}),
		gone:   make(chan struct{}),
	}
	defer close(fc.gone)
	f.mu.Lock()
	f.paths[fc.path]++
	f.mu.Unlock()
	select {
	case f.conns <- fc:
	case <-f.quit:
		return
	}
	// The client never sends data; CloseRead answers its close frame and
	// cancels ctx when it hangs up.
	ctx := ws.CloseRead(context.Background())
	for {
		select {
		case fr := <-fc.frames:
			typ := websocket.MessageText
			if fr.binary {
				typ = websocket.MessageBinary
			}
			if ws.Write(ctx, typ, fr.data) != nil {
				return
			}
		case <-fc.hangup:
			ws.Close(websocket.StatusGoingAway, "feed restarts")
			return
		case <-ctx.Done():
			return
		case <-f.quit:
			return
		}
	}
}

// url returns the ws:// URL of path on the feed.
func (f *feed) url(path string) string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + path
}

// accepted returns how many connections the feed accepted on path.
func (f *feed) accepted(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paths[path]
}

// next waits for the feed's next connection.
func (f *feed) next(t testing.TB) *feedConn {
	t.Helper()
	select {
	case fc := <-f.conns:
		return fc
	case <-time.After(waitFor):
		t.Fatal("no upstream connection arrived")
		return nil
	}
}

// send has the server send a text frame.
func (fc *feedConn) send(t testing.TB, data string) {
	t.Helper()
	fc.sendFrame(t, feedFrame{data: []byte(data)})
}

func (fc *feedConn) sendFrame(t testing.TB, fr feedFrame) {
	t.Helper()
	select {
	case fc.frames <- fr:
	case <-fc.gone:
		t.Fatal("the upstream connection ended before the frame was sent")
	case <-time.After(waitFor):
		t.Fatal("timed out sending a frame")
	}
}

// waitGone waits until the connection has ended.
func (fc *feedConn) waitGone(t testing.TB) {
	t.Helper()
	select {
	case <-fc.gone:
	case <-time.After(waitFor):
		t.Fatal("the upstream connection was not closed")
	}
}

// newChannel returns a channel on path of f that is closed at cleanup.
// Reconnects are quick.
func newChannel(t testing.TB, f *feed, path string, opts Options) *Channel {
	t.Helper()
	opts.Upstream = upstreamOpts(f, path)
	opts.Logger = wstest.Logger(t)
	if opts.Name == "" {
		opts.Name = strings.TrimPrefix(path, "/")
	}
	c := New(opts)
	t.Cleanup(c.Close)
	return c
}

// upstreamOpts returns options for a connection to path on f, with quick
// reconnects.
func upstreamOpts(f *feed, path string) upstream.Options {
	return upstream.Options{
		URL:        f.url(path),
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 20 * time.Millisecond,
	}
}

// subscribe subscribes to c and closes the subscription at cleanup.
func subscribe(t testing.TB, c *Channel, o SubscribeOptions) *Subscription {
	t.Helper()
	s, err := c.Subscribe(o)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", o, err)
	}
	t.Cleanup(s.Close)
	return s
}

// readN reads from s until it has n events, and fails on more.
func readN(t testing.TB, s *Subscription, n int) []*Event {
	t.Helper()
	var got []*Event
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		var err error
		got, err = s.Read(got)
		if err != nil {
			t.Fatalf("Read after %d of %d events: %v", len(got), n, err)
		}
		if len(got) > n {
			t.Fatalf("read %d events, want %d: %q", len(got), n, datas(got))
		}
		if len(got) == n {
			return got
		}
		select {
		case <-s.Wake():
		case <-s.Done():
		case <-timeout.C:
			t.Fatalf("read %d events, want %d: %q", len(got), n, datas(got))
		}
	}
}

// readNone fails if s has an event due now.
func readNone(t testing.TB, s *Subscription) {
	t.Helper()
	got, err := s.Read(nil)
	if err != nil || len(got) > 0 {
		t.Fatalf("Read = %q, %v; want nothing", datas(got), err)
	}
}

// publish has fc send each frame and waits until c has published it; the
// events are returned in order. With clk, the clock moves by step after
// each event.
func publish(t testing.TB, c *Channel, fc *feedConn, clk *fakeClock, step time.Duration, frames ...string) []*Event {
	t.Helper()
	w := subscribe(t, c, SubscribeOptions{})
	defer w.Close()
	if _, err := w.Read(nil); err != nil { // skip what ReplayOnConnect gives
		t.Fatal(err)
	}
	var out []*Event
	for _, fr := range frames {
		fc.send(t, fr)
		out = append(out, readN(t, w, 1)...)
		if clk != nil {
			clk.Advance(step)
		}
	}
	return out
}

// datas returns the events' data as strings.
func datas(evs []*Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.Data)
	}
	return out
}

// ids returns the events' ids.
func ids(evs []*Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// fakeClock is an Options.Now that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// clockStart is when fake clocks start: ids then begin with "1700000000000-".
var clockStart = time.UnixMilli(1_700_000_000_000)

func newClock() *fakeClock { return &fakeClock{now: clockStart} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// running reports whether c has an upstream run going.
func (c *Channel) running() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stop != nil
}

// publishFrame publishes f as if the current upstream run had received it.
func (c *Channel) publishFrame(f upstream.Frame) {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	c.publish(gen, f)
}
