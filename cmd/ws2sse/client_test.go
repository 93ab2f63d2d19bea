package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/sse"
)

// sseStream is an EventSource-like client reading one stream.
type sseStream struct {
	resp   *http.Response
	items  chan sseItem // closed after the item that carries the end
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader returns
}

// sseItem is an event read from a stream, or the stream's end.
type sseItem struct {
	ev    sse.Event
	retry time.Duration // the last retry: field read so far; 0 when none
	err   error         // io.EOF when the stream ended; ev is unset then
}

// getSSE requests url as an EventSource would and returns the response,
// with its body being parsed when it is 200. The stream ends with the test.
func getSSE(t testing.TB, client *http.Client, url string, header http.Header) (*http.Response, *sseStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	s := &sseStream{resp: resp, items: make(chan sseItem, 1024), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		close(s.items)
		close(s.done)
		return resp, s
	}
	go s.read()
	return resp, s
}

// openSSE opens a stream and checks that it is one.
func openSSE(t testing.TB, client *http.Client, url string, header http.Header) *sseStream {
	t.Helper()
	resp, s := getSSE(t, client, url, header)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("GET %s: Content-Type %q, want text/event-stream", url, ct)
	}
	return s
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.items)
	p := sse.NewParser(s.resp.Body)
	for {
		ev, err := p.Next()
		retry, _ := p.Retry()
		it := sseItem{ev: ev, retry: retry, err: err}
		select {
		case s.items <- it:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// close stops reading and waits for the reader.
func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// nextItem returns the next event or the end of the stream.
func (s *sseStream) nextItem(t testing.TB) sseItem {
	t.Helper()
	select {
	case it, ok := <-s.items:
		if !ok {
			t.Fatal("read past the end of the stream")
		}
		return it
	case <-time.After(waitTimeout):
		t.Fatalf("no event on %s within %s", s.resp.Request.URL.Path, waitTimeout)
	}
	panic("unreachable")
}

// next returns the next event; the stream must not end before it.
func (s *sseStream) next(t testing.TB) sse.Event {
	t.Helper()
	it := s.nextItem(t)
	if it.err != nil {
		t.Fatalf("stream %s ended (%v) while an event was expected", s.resp.Request.URL.Path, it.err)
	}
	return it.ev
}

// nextExcept returns the next event whose name is not one of skip.
func (s *sseStream) nextExcept(t testing.TB, skip ...string) sse.Event {
	t.Helper()
	for {
		ev := s.next(t)
		if !slices.Contains(skip, ev.Name) {
			return ev
		}
	}
}

// end reads the stream to its end, which must be a clean one, and returns
// the events read on the way and the last retry: value.
func (s *sseStream) end(t testing.TB) ([]sse.Event, time.Duration) {
	t.Helper()
	var evs []sse.Event
	for {
		it := s.nextItem(t)
		if it.err == nil {
			evs = append(evs, it.ev)
			continue
		}
		if !errors.Is(it.err, io.EOF) {
			t.Fatalf("stream %s ended with %v, want a clean end", s.resp.Request.URL.Path, it.err)
		}
		return evs, it.retry
	}
}

// checkIDsIncrease checks that every id is a valid event id and that each
// is greater than the one before.
func checkIDsIncrease(t testing.TB, ids ...string) {
	t.Helper()
	for i, id := range ids {
		if !sse.ValidID(id) {
			t.Errorf("event id %q is not a valid id", id)
		}
		if i > 0 && !idLess(t, ids[i-1], id) {
			t.Errorf("event ids do not increase: %q then %q", ids[i-1], id)
		}
	}
}

// idLess compares two ids of the form <unix-ms>-<seq>.
func idLess(t testing.TB, a, b string) bool {
	t.Helper()
	am, as := splitID(t, a)
	bm, bs := splitID(t, b)
	return am < bm || am == bm && as < bs
}

func splitID(t testing.TB, id string) (uint64, uint64) {
	t.Helper()
	ms, seq, ok := strings.Cut(id, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("event id %q is not <unix-ms>-<seq>", id)
	}
	return m, s
}

// dialWS opens a WebSocket to ws2sse; it is dropped when the test ends.
func dialWS(t testing.TB, url string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readWS reads one message.
func readWS(t testing.TB, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("WebSocket read: %v", err)
	}
	return typ, b
}
