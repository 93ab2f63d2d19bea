package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// feed is the upstream: a real WebSocket server that the test publishes
// frames on.
type feed struct {
	srv  *httptest.Server
	done chan struct{} // closed when the test ends: every connection closes

	mu    sync.Mutex
	conns []*feedConn   // every connection, in order; guarded by mu
	added chan struct{} // closed and replaced on each new connection; guarded by mu
}

// feedConn is one connection from ws2sse to the feed.
type feedConn struct {
	path string
	c    *websocket.Conn
}

func newFeed(t *testing.T) *feed {
	t.Helper()
	f := &feed{done: make(chan struct{}), added: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.done)
		f.srv.Close()
	})
	return f
}

func (f *feed) serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	fc := &feedConn{path: r.URL.Path, c: c}
	f.mu.Lock()
	f.conns = append(f.conns, fc)
	close(f.added)
	f.added = make(chan struct{})
	f.mu.Unlock()
	// Read, so that pings are answered and a close is seen.
	ctx := c.CloseRead(context.Background())
	select {
	case <-ctx.Done():
	case <-f.done:
		c.Close(websocket.StatusGoingAway, "test over")
	}
}

// host is the feed's host:port.
func (f *feed) host() string {
	return strings.TrimPrefix(f.srv.URL, "http://")
}

// conn waits for the newest connection on path.
func (f *feed) conn(t *testing.T, path string) *feedConn {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		f.mu.Lock()
		added := f.added
		for i := len(f.conns) - 1; i >= 0; i-- {
			if f.conns[i].path == path {
				fc := f.conns[i]
				f.mu.Unlock()
				return fc
			}
		}
		f.mu.Unlock()
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for ws2sse to connect to the feed at %s", waitTimeout, path)
		}
	}
}

// send publishes one text frame.
func (fc *feedConn) send(t *testing.T, text string) {
	t.Helper()
	fc.write(t, websocket.MessageText, []byte(text))
}

// sendBinary publishes one binary frame.
func (fc *feedConn) sendBinary(t *testing.T, b []byte) {
	t.Helper()
	fc.write(t, websocket.MessageBinary, b)
}

func (fc *feedConn) write(t *testing.T, typ websocket.MessageType, b []byte) {
	t.Helper()
	if err := fc.writeErr(typ, b); err != nil {
		t.Fatalf("failed to publish on the feed: %v", err)
	}
}

// writeErr publishes one frame; it is safe to call from any goroutine.
func (fc *feedConn) writeErr(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return fc.c.Write(ctx, typ, b)
}
