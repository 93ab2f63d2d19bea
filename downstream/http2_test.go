package downstream

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// serveTLS serves h, a handler of s, over TLS with HTTP/2 on loopback.
// When the test ends it shuts s down and waits for every handler.
func serveTLS(t *testing.T, s *Server, h http.Handler) *httptest.Server {
	t.Helper()
	return startServer(t, s, h, func(srv *httptest.Server) {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	})
}

// h2Stream is one SSE stream over HTTP/2 and the connection it uses.
type h2Stream struct {
	*sseClient
	conn net.Conn
}

func openH2(t *testing.T, srv *httptest.Server, path string) *h2Stream {
	t.Helper()
	st := &h2Stream{}
	st.sseClient = openStream(t, srv.Client(), srv.URL+path, nil, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { st.conn = info.Conn },
	})
	resp := st.resp
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", path, resp.StatusCode)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("GET %s: protocol %s, want HTTP/2", path, resp.Proto)
	}
	checkSSEHeaders(t, resp.Header)
	return st
}

// readConcurrently reads n events from each stream, all streams at once,
// and returns them with the first error.
func readConcurrently(streams []*h2Stream, n int) ([][]sse.Event, error) {
	got := make([][]sse.Event, len(streams))
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, st := range streams {
		wg.Go(func() {
			for range n {
				ev, err := st.p.Next()
				if err != nil {
					errs[i] = fmt.Errorf("stream %d after %d events: %w", i, len(got[i]), err)
					return
				}
				got[i] = append(got[i], ev)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// TestHTTP2 reads SSE streams over HTTP/2 with TLS: two at once on one
// connection, each with every event in order; one ending leaves the other
// alone; a shutdown ends the other with a short retry.
func TestHTTP2(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	const short = 100 * time.Millisecond
	s := New(Options{Heartbeat: time.Minute, ShutdownRetry: short, MaxClients: 10, Logger: wstest.Logger(t)})
	srv := serveTLS(t, s, s.Route(Route{Open: Static(ch)}))

	// One after the other, so that the second finds the connection of the
	// first.
	streams := []*h2Stream{openH2(t, srv, "/stream"), openH2(t, srv, "/stream")}
	if streams[0].conn == nil || streams[0].conn != streams[1].conn {
		t.Fatalf("the streams use connections %p and %p, want one", streams[0].conn, streams[1].conn)
	}
	wstest.Eventually(t, "two clients", func() bool { return clients(ch) == 2 })

	const n = 50
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("h2 event %d", i)
	}
	done := make(chan struct{})
	var got [][]sse.Event
	var err error
	go func() {
		defer close(done)
		got, err = readConcurrently(streams, n)
	}()
	ids := make([]string, n)
	for i, d := range want {
		ids[i] = publish(t, f, ch, websocket.MessageText, []byte(d))
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		for _, st := range streams {
			st.resp.Body.Close()
		}
		<-done
		t.Fatalf("the events did not all arrive: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, evs := range got {
		for j, ev := range evs {
			if ev.Name != "message" || ev.Data != want[j] || ev.ID != ids[j] {
				t.Fatalf("stream %d, event %d: %s %q id %q, want message %q id %q", i, j, ev.Name, ev.Data, ev.ID, want[j], ids[j])
			}
		}
	}

	// One stream ends; the other, on the same connection, goes on.
	streams[0].resp.Body.Close()
	wstest.Eventually(t, "the first stream to end", func() bool { return clients(ch) == 1 })
	f.text(t, "after")
	streams[1].expectData(t, "after")
	third := openH2(t, srv, "/stream")
	if third.conn != streams[1].conn {
		t.Errorf("a third stream opened a new connection")
	}

	s.Shutdown()
	for i, st := range []*h2Stream{streams[1], third} {
		st.expectEOF(t)
		if r, _ := st.p.Retry(); r < short || r > 2*short {
			t.Errorf("stream %d: retry %v at the end, want %v to %v", i, r, short, 2*short)
		}
	}
}
