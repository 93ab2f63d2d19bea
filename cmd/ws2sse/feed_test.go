package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// feed is a real WebSocket upstream on loopback. It records every
// connection ws2sse opens to it, with the request URL and the text frames
// (subscribe frames) it receives, and pushes frames on demand.
type feed struct {
	srv *httptest.Server
	wg  sync.WaitGroup // handlers

	mu    sync.Mutex
	conns []*feedConn // every connection accepted, in order; guarded by mu
}

// feedConn is one connection to the feed.
type feedConn struct {
	f     *feed
	url   string      // the request's path and raw query
	path  string      // the request's path, decoded
	query url.Values  // the request's query
	hdr   http.Header // the request's headers
	c     *websocket.Conn

	// Guarded by f.mu.
	frames []string // text frames received, in order
	closed bool
	status websocket.StatusCode // the close status received; -1 when none was
}

// newFeed starts a feed that stops when the test ends.
func newFeed(t testing.TB) *feed {
	f := &feed{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.close)
	return f
}

// host returns the feed's host:port.
func (f *feed) host() string {
	return strings.TrimPrefix(f.srv.URL, "http://")
}

func (f *feed) serve(w http.ResponseWriter, r *http.Request) {
	f.wg.Add(1)
	defer f.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	fc := &feedConn{f: f, url: r.URL.RequestURI(), path: r.URL.Path, query: r.URL.Query(), hdr: r.Header, c: c, status: -1}
	f.mu.Lock()
	f.conns = append(f.conns, fc)
	f.mu.Unlock()
	for {
		typ, data, err := c.Read(context.Background())
		f.mu.Lock()
		if err != nil {
			fc.closed = true
			fc.status = websocket.CloseStatus(err)
			f.mu.Unlock()
			return
		}
		if typ == websocket.MessageText {
			fc.frames = append(fc.frames, string(data))
		}
		f.mu.Unlock()
	}
}

// close stops the feed and drops every connection.
func (f *feed) close() {
	f.srv.Close()
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	for _, fc := range conns {
		fc.c.CloseNow()
	}
	f.wg.Wait()
}

// count returns how many connections were accepted so far.
func (f *feed) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// open returns how many connections are open.
func (f *feed) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, fc := range f.conns {
		if !fc.closed {
			n++
		}
	}
	return n
}

// urls returns the request URLs of every connection, in order.
func (f *feed) urls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.conns))
	for i, fc := range f.conns {
		out[i] = fc.url
	}
	return out
}

// conn waits for the n-th connection (from 1) and returns it.
func (f *feed) conn(t testing.TB, n int) *feedConn {
	t.Helper()
	wstest.Eventually(t, "connection "+strconv.Itoa(n)+" to the feed", func() bool { return f.count() >= n })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns[n-1]
}

// openConn returns an open connection to url, or nil.
func (f *feed) openConn(url string) *feedConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fc := range f.conns {
		if fc.url == url && !fc.closed {
			return fc
		}
	}
	return nil
}

// connTo waits for a connection to url that is still open and returns it.
func (f *feed) connTo(t testing.TB, url string) *feedConn {
	t.Helper()
	var found *feedConn
	wstest.Eventually(t, "an open connection to "+url, func() bool {
		found = f.openConn(url)
		return found != nil
	})
	return found
}

// waitFrames waits until the connection has received n text frames and
// returns them.
func (fc *feedConn) waitFrames(t testing.TB, n int) []string {
	t.Helper()
	var got []string
	wstest.Eventually(t, "subscribe frames on "+fc.url, func() bool {
		fc.f.mu.Lock()
		defer fc.f.mu.Unlock()
		got = append([]string(nil), fc.frames...)
		return len(got) >= n
	})
	return got
}

// isClosed reports whether the connection has ended.
func (fc *feedConn) isClosed() bool {
	fc.f.mu.Lock()
	defer fc.f.mu.Unlock()
	return fc.closed
}

// waitClosed waits until the connection ends and returns the close status
// the feed received, -1 when none.
func (fc *feedConn) waitClosed(t testing.TB) websocket.StatusCode {
	t.Helper()
	wstest.Eventually(t, "the connection to "+fc.url+" to close", fc.isClosed)
	fc.f.mu.Lock()
	defer fc.f.mu.Unlock()
	return fc.status
}

// send pushes a text frame to ws2sse.
func (fc *feedConn) send(t testing.TB, msg string) {
	t.Helper()
	fc.write(t, websocket.MessageText, []byte(msg))
}

// sendBinary pushes a binary frame to ws2sse.
func (fc *feedConn) sendBinary(t testing.TB, b []byte) {
	t.Helper()
	fc.write(t, websocket.MessageBinary, b)
}

func (fc *feedConn) write(t testing.TB, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := fc.c.Write(ctx, typ, b); err != nil {
		t.Fatalf("feed: write to %s: %v", fc.url, err)
	}
}
