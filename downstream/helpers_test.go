package downstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

const (
	// waitTimeout bounds every wait for something that should happen
	// soon.
	waitTimeout = wstest.WaitTimeout
	// streamTimeout bounds a whole client connection, so that a test that
	// goes wrong fails instead of hanging.
	streamTimeout = 30 * time.Second
)

// feed is a real WebSocket upstream on loopback. The test pushes frames to
// the connection it accepted last and can drop that connection.
type feed struct {
	url   string
	conns chan *websocket.Conn // accepted connections, in order

	mu  sync.Mutex
	cur *websocket.Conn // where frames go; nil until taken from conns
}

func newFeed(t *testing.T) *feed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &feed{conns: make(chan *websocket.Conn, 16)}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		select {
		case f.conns <- c:
		case <-ctx.Done():
			return
		}
		// Reading answers the upstream's pings and its close handshake.
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}))
	f.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/feed"
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
	})
	return f
}

// conn returns the current upstream connection, waiting for the next one
// after a drop.
func (f *feed) conn(t *testing.T) *websocket.Conn {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		select {
		case f.cur = <-f.conns:
		case <-time.After(waitTimeout):
			t.Fatal("the bridge did not connect to the upstream")
		}
	}
	return f.cur
}

// send pushes one frame to the bridge.
func (f *feed) send(t *testing.T, typ websocket.MessageType, data []byte) {
	t.Helper()
	c := f.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Write(ctx, typ, data); err != nil {
		t.Fatalf("upstream write: %v", err)
	}
}

func (f *feed) text(t *testing.T, s string) {
	t.Helper()
	f.send(t, websocket.MessageText, []byte(s))
}

// drop cuts the current connection without a close handshake.
func (f *feed) drop(t *testing.T) {
	t.Helper()
	c := f.conn(t)
	f.mu.Lock()
	f.cur = nil
	f.mu.Unlock()
	c.CloseNow()
}

// newChannel returns an eager channel on f, connected, closed when the test
// ends.
func newChannel(t *testing.T, f *feed, opts bridge.Options) *bridge.Channel {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	opts.Upstream.URL = f.url
	if opts.Upstream.BackoffMin == 0 {
		opts.Upstream.BackoffMin = 10 * time.Millisecond
		opts.Upstream.BackoffMax = 20 * time.Millisecond
	}
	opts.Logger = wstest.Logger(t)
	ch := bridge.New(opts)
	t.Cleanup(ch.Close)
	f.conn(t)
	wstest.Eventually(t, "the upstream to be up", func() bool { return ch.Info().State.State == upstream.StateUp })
	return ch
}

// publish pushes a frame and waits until the channel has published it; it
// returns the event's id.
func publish(t *testing.T, f *feed, ch *bridge.Channel, typ websocket.MessageType, data []byte) string {
	t.Helper()
	n := ch.Info().EventsIn
	f.send(t, typ, data)
	wstest.Eventually(t, "the event to be published", func() bool { return ch.Info().EventsIn > n })
	return ch.Info().LastEventID
}

// publishN publishes n text frames "<prefix>0", "<prefix>1", … and returns
// their ids.
func publishN(t *testing.T, f *feed, ch *bridge.Channel, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = publish(t, f, ch, websocket.MessageText, []byte(prefix+strconv.Itoa(i)))
	}
	return ids
}

// testServer serves one Server's handler on loopback. When the test ends it
// shuts the Server down and waits for every handler, hijacked ones too.
type testServer struct {
	*httptest.Server
	s *Server
}

// waitAsync calls the Server's Wait and returns a channel closed when it
// returns.
func (ts *testServer) waitAsync() <-chan struct{} {
	waited := make(chan struct{})
	go func() {
		ts.s.Wait()
		close(waited)
	}()
	return waited
}

// waitStreams fails the test unless the Server's Wait returns within
// waitTimeout.
func (ts *testServer) waitStreams(t *testing.T) {
	t.Helper()
	select {
	case <-ts.waitAsync():
	case <-time.After(waitTimeout):
		t.Fatal("Wait did not return after Close")
	}
}

// newServer serves a Server made with opts, logging to the test's log.
func newServer(t *testing.T, opts Options, resolve Resolver) *testServer {
	t.Helper()
	opts.Logger = wstest.Logger(t)
	return serve(t, New(opts), resolve)
}

// serve serves the route of the channels resolve finds.
func serve(t *testing.T, s *Server, resolve Resolver) *testServer {
	t.Helper()
	return serveHandler(t, s, s.Route(Route{Open: resolve}))
}

// serveHandler serves h, a handler of s, on loopback.
func serveHandler(t *testing.T, s *Server, h http.Handler) *testServer {
	t.Helper()
	return &testServer{Server: startServer(t, s, h, (*httptest.Server).Start), s: s}
}

// startServer serves h, a handler of s, on a loopback server that start
// starts. When the test ends it shuts s down and waits for every handler,
// hijacked ones too.
func startServer(t *testing.T, s *Server, h http.Handler, start func(*httptest.Server)) *httptest.Server {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		h.ServeHTTP(w, r)
	}))
	start(srv)
	t.Cleanup(func() {
		s.Shutdown()
		srv.Close()
		wg.Wait()
		s.Wait()
	})
	return srv
}

// wsURL returns the ws:// URL of path on the server.
func (ts *testServer) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + path
}

// request sends a request and returns the response with its whole body.
func (ts *testServer) request(t *testing.T, method, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, string(body)
}

// sseClient is one EventSource-like reader of a stream. raw records every
// byte the parser has read.
type sseClient struct {
	resp *http.Response
	raw  *bytes.Buffer
	p    *sse.Parser
}

// openSSE opens a stream; the request's headers are hdr. It does not check
// the status.
func (ts *testServer) openSSE(t *testing.T, path string, hdr http.Header) *sseClient {
	t.Helper()
	return ts.openSSEVia(t, ts.Client(), path, hdr)
}

// openSSEVia opens a stream through client; it does not check the status.
func (ts *testServer) openSSEVia(t *testing.T, client *http.Client, path string, hdr http.Header) *sseClient {
	t.Helper()
	return openStream(t, client, ts.URL+path, hdr, nil)
}

// openStream GETs url through client as an EventSource would, with the
// request headers hdr and, when it is not nil, trace. It does not check the
// status. The stream is closed when the test ends.
func openStream(t *testing.T, client *http.Client, url string, hdr http.Header, trace *httptrace.ClientTrace) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	if trace != nil {
		ctx = httptrace.WithClientTrace(ctx, trace)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() {
		resp.Body.Close()
		cancel()
	})
	raw := new(bytes.Buffer)
	return &sseClient{resp: resp, raw: raw, p: sse.NewParser(io.TeeReader(resp.Body, raw))}
}

// stream opens a stream and checks that it was accepted.
func (ts *testServer) stream(t *testing.T, path string, hdr http.Header) *sseClient {
	t.Helper()
	c := ts.openSSE(t, path, hdr)
	if c.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", path, c.resp.StatusCode)
	}
	return c
}

// next returns the next event.
func (c *sseClient) next(t *testing.T) sse.Event {
	t.Helper()
	ev, err := c.p.Next()
	if err != nil {
		t.Fatalf("reading the stream: %v (read so far: %q)", err, c.raw.String())
	}
	return ev
}

// expectEOF reads on and checks that the stream ends with no more events.
func (c *sseClient) expectEOF(t *testing.T) {
	t.Helper()
	ev, err := c.p.Next()
	if err == nil {
		t.Fatalf("got event %+v, want the end of the stream", ev)
	}
	if err != io.EOF {
		t.Fatalf("stream ended with %v, want EOF (read: %q)", err, c.raw.String())
	}
}

// expectData reads events and checks their data.
func (c *sseClient) expectData(t *testing.T, want ...string) []sse.Event {
	t.Helper()
	evs := make([]sse.Event, len(want))
	for i, w := range want {
		evs[i] = c.next(t)
		if evs[i].Data != w || evs[i].Name != "message" {
			t.Fatalf("event %d: got %s %q, want message %q", i, evs[i].Name, evs[i].Data, w)
		}
	}
	return evs
}

// dialWS opens a WebSocket to the server's /stream with the query. It
// returns the handshake's response too, for refusals.
func (ts *testServer) dialWS(t *testing.T, query string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	opts.HTTPClient = ts.Client()
	return ts.dial(t, "/stream"+query, opts)
}

// dialWSVia opens a WebSocket at path through client, with the request
// headers hdr.
func (ts *testServer) dialWSVia(t *testing.T, client *http.Client, path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	return ts.dial(t, path, &websocket.DialOptions{HTTPClient: client, HTTPHeader: hdr})
}

// dial opens a WebSocket at path with opts; the connection takes messages
// of any size and is dropped when the test ends.
func (ts *testServer) dial(t *testing.T, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ts.wsURL(path), opts)
	if c != nil {
		c.SetReadLimit(-1)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// ws dials and checks that the connection was accepted.
func (ts *testServer) ws(t *testing.T, query string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, _, err := ts.dialWS(t, query, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// readWS reads one message.
func readWS(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading the WebSocket: %v", err)
	}
	return typ, b
}

// expectText reads text messages and checks them.
func expectText(t *testing.T, c *websocket.Conn, want ...string) {
	t.Helper()
	for i, w := range want {
		typ, b := readWS(t, c)
		if typ != websocket.MessageText || string(b) != w {
			t.Fatalf("message %d: got %v %q, want text %q", i, typ, b, w)
		}
	}
}

// expectClose reads until the connection ends and returns its close
// status (-1 when it ended without a close frame).
func expectClose(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the server did not end the WebSocket")
			}
			return websocket.CloseStatus(err)
		}
	}
}

// clients returns how many clients the channel serves, over both transports.
func clients(ch *bridge.Channel) int {
	inf := ch.Info()
	return inf.Clients()
}
