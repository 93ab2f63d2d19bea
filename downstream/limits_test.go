package downstream

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// fromIP returns an HTTP client whose connections come from the loopback
// address ip, so that one test can play clients at many addresses (Linux
// routes all of 127.0.0.0/8 to lo). It skips the test where the system
// cannot bind ip, and fails it there in CI (CI=true).
func fromIP(t *testing.T, ip string) *http.Client {
	t.Helper()
	addr := &net.TCPAddr{IP: net.ParseIP(ip)}
	l, err := net.ListenTCP("tcp", addr)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot use the loopback address %s: %v", ip, err)
		}
		t.Skipf("cannot use the loopback address %s: %v", ip, err)
	}
	l.Close()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: addr}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// expectTurnedAway checks that an SSE client over a limit was sent away
// the "retry" way: 200, a retry of 5 to 15 s, one overload event, and the
// end of the stream.
func expectTurnedAway(t *testing.T, c *sseClient) {
	t.Helper()
	if c.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", c.resp.StatusCode)
	}
	checkSSEHeaders(t, c.resp.Header)
	ev := c.next(t)
	if ev.Name != "overload" || ev.Data != "too many connections" || ev.ID != "" {
		t.Fatalf("got %+v, want one overload event", ev)
	}
	c.expectEOF(t)
	if r, ok := c.p.Retry(); !ok || r < 5*time.Second || r > 15*time.Second {
		t.Errorf("retry %v (sent: %v), want 5 to 15 s", r, ok)
	}
	if n := strings.Count(c.raw.String(), "event: overload\n"); n != 1 {
		t.Errorf("%d overload events in %q, want 1", n, c.raw.String())
	}
}

// expectRejected checks a 503 with a Retry-After of 5 to 15 s, for an SSE
// request.
func expectRejected(t *testing.T, c *sseClient) {
	t.Helper()
	checkRetryAfter(t, c.resp)
	if strings.Contains(c.resp.Header.Get("Content-Type"), "event-stream") {
		t.Errorf("a rejected client got a stream: %q", c.resp.Header.Get("Content-Type"))
	}
}

// expectWSRejected checks that a WebSocket dial was refused with 503 and a
// Retry-After of 5 to 15 s; it takes what dialWS returns.
func expectWSRejected(t *testing.T, _ *websocket.Conn, resp *http.Response, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("the WebSocket was accepted")
	}
	checkRetryAfter(t, resp)
}

// served pushes one event and checks that every client reads it, so each
// is a live stream and not a refusal that happens to be open.
func served(t *testing.T, f *feed, data string, streams []*sseClient, conns []*websocket.Conn) {
	t.Helper()
	f.text(t, data)
	for _, c := range streams {
		c.expectData(t, data)
	}
	for _, c := range conns {
		expectText(t, c, data)
	}
}

func TestLimitMaxClients(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})

	t.Run("retry", func(t *testing.T) {
		ts := newServer(t, Options{Heartbeat: time.Minute, MaxClients: 2}, Static(ch))
		streams := []*sseClient{ts.stream(t, "/stream", nil)}
		conns := []*websocket.Conn{ts.ws(t, "", nil)}

		// Several times, for the random retry to be seen in its range.
		for range 3 {
			expectTurnedAway(t, ts.openSSE(t, "/stream", nil))
			c, resp, err := ts.dialWS(t, "", nil)
			expectWSRejected(t, c, resp, err)
		}
		// The clients inside the limit are unaffected.
		served(t, f, "still here", streams, conns)
		if n := clients(ch); n != 2 {
			t.Errorf("%d clients on the channel, want 2", n)
		}
	})
	t.Run("reject", func(t *testing.T) {
		ts := newServer(t, Options{Heartbeat: time.Minute, MaxClients: 2, OverloadReject: true}, Static(ch))
		streams := []*sseClient{ts.stream(t, "/stream", nil), ts.stream(t, "/stream", nil)}
		expectRejected(t, ts.openSSE(t, "/stream", nil))
		c, resp, err := ts.dialWS(t, "", nil)
		expectWSRejected(t, c, resp, err)
		served(t, f, "reject", streams, nil)
	})
}

// TestLimitBothTransports: SSE and WebSocket clients share one limit.
func TestLimitBothTransports(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	opts := Options{Heartbeat: time.Minute, MaxClients: 2, OverloadReject: true}

	t.Run("two SSE", func(t *testing.T) {
		ts := newServer(t, opts, Static(ch))
		streams := []*sseClient{ts.stream(t, "/stream", nil), ts.stream(t, "/stream", nil)}
		c, resp, err := ts.dialWS(t, "", nil)
		expectWSRejected(t, c, resp, err)
		served(t, f, "sse", streams, nil)
	})
	t.Run("two WebSocket", func(t *testing.T) {
		ts := newServer(t, opts, Static(ch))
		conns := []*websocket.Conn{ts.ws(t, "", nil), ts.ws(t, "", v1Opts)}
		expectRejected(t, ts.openSSE(t, "/stream", nil))
		f.text(t, "ws")
		expectText(t, conns[0], "ws")
		if m := readV1(t, conns[1]); m.Event != "message" || string(m.Data) != `"ws"` {
			t.Errorf("got %+v, want the event", m)
		}
	})
	t.Run("one of each", func(t *testing.T) {
		ts := newServer(t, opts, Static(ch))
		streams := []*sseClient{ts.stream(t, "/stream", nil)}
		conns := []*websocket.Conn{ts.ws(t, "", nil)}
		expectRejected(t, ts.openSSE(t, "/stream", nil))
		c, resp, err := ts.dialWS(t, "", nil)
		expectWSRejected(t, c, resp, err)
		served(t, f, "mixed", streams, conns)
	})
}

// TestLimitSlotFrees: the slot of a client that leaves is free for the next
// one at once, whichever transport either uses.
func TestLimitSlotFrees(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute, MaxClients: 1, OverloadReject: true}, Static(ch))

	// admitSSE opens streams until one is admitted.
	admitSSE := func(t *testing.T) *sseClient {
		t.Helper()
		var c *sseClient
		wstest.Eventually(t, "an SSE client to be admitted", func() bool {
			c = ts.openSSE(t, "/stream", nil)
			if c.resp.StatusCode == http.StatusOK {
				return true
			}
			c.resp.Body.Close()
			return false
		})
		return c
	}
	admitWS := func(t *testing.T) *websocket.Conn {
		t.Helper()
		var c *websocket.Conn
		wstest.Eventually(t, "a WebSocket client to be admitted", func() bool {
			var err error
			c, _, err = ts.dialWS(t, "", nil)
			return err == nil
		})
		return c
	}

	first := ts.stream(t, "/stream", nil)
	expectRejected(t, ts.openSSE(t, "/stream", nil))
	served(t, f, "1", []*sseClient{first}, nil)

	// An SSE client leaves; a WebSocket client takes its place.
	first.resp.Body.Close()
	second := admitWS(t)
	served(t, f, "2", nil, []*websocket.Conn{second})
	c, resp, err := ts.dialWS(t, "", nil)
	expectWSRejected(t, c, resp, err)

	// A WebSocket client leaves with a close handshake; an SSE client
	// takes its place.
	if err := second.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("closing the WebSocket: %v", err)
	}
	third := admitSSE(t)
	served(t, f, "3", []*sseClient{third}, nil)

	// And an SSE client after an SSE client.
	third.resp.Body.Close()
	fourth := admitSSE(t)
	served(t, f, "4", []*sseClient{fourth}, nil)
	expectRejected(t, ts.openSSE(t, "/stream", nil))
	wstest.Eventually(t, "one client on the channel", func() bool { return clients(ch) == 1 })
}

func TestLimitPerIP(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	other := fromIP(t, "127.0.0.2")

	t.Run("reject", func(t *testing.T) {
		ts := newServer(t, Options{Heartbeat: time.Minute, MaxClientsPerIP: 1, OverloadReject: true}, Static(ch))
		local := ts.stream(t, "/stream", nil)
		// A second client from 127.0.0.1, over either transport, is refused…
		expectRejected(t, ts.openSSE(t, "/stream", nil))
		c, resp, err := ts.dialWS(t, "", nil)
		expectWSRejected(t, c, resp, err)
		// …while one from 127.0.0.2 is served, and only one.
		remote := ts.openSSEVia(t, other, "/stream", nil)
		if remote.resp.StatusCode != http.StatusOK {
			t.Fatalf("client from 127.0.0.2: status %d, want 200", remote.resp.StatusCode)
		}
		c, resp, err = ts.dialWSVia(t, other, "/stream", nil)
		expectWSRejected(t, c, resp, err)
		served(t, f, "per ip", []*sseClient{local, remote}, nil)
	})
	t.Run("retry", func(t *testing.T) {
		ts := newServer(t, Options{Heartbeat: time.Minute, MaxClientsPerIP: 1}, Static(ch))
		local := ts.ws(t, "", nil)
		expectTurnedAway(t, ts.openSSE(t, "/stream", nil))
		remote, _, err := ts.dialWSVia(t, other, "/stream", nil)
		if err != nil {
			t.Fatalf("client from 127.0.0.2: %v", err)
		}
		expectTurnedAway(t, ts.openSSEVia(t, other, "/stream", nil))
		served(t, f, "per ip retry", nil, []*websocket.Conn{local, remote})
	})
}

// TestLimitTrustedProxies: behind a trusted proxy, clients are counted by
// the address X-Forwarded-For names, read from the right; anyone else's
// X-Forwarded-For is ignored.
func TestLimitTrustedProxies(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	proxy := &http.Client{Transport: &http.Transport{}} // from 127.0.0.1
	t.Cleanup(proxy.CloseIdleConnections)
	untrusted := fromIP(t, "127.0.0.2")
	xff := func(v ...string) http.Header { return http.Header{"X-Forwarded-For": v} }

	// held are the admitted clients; each must read the event at the end.
	var streams []*sseClient
	var conns []*websocket.Conn
	opts := Options{
		Heartbeat:       time.Minute,
		MaxClientsPerIP: 1,
		OverloadReject:  true,
		TrustedProxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}
	ts := newServer(t, opts, Static(ch))
	open := func(t *testing.T, client *http.Client, hdr http.Header) *sseClient {
		t.Helper()
		return ts.openSSEVia(t, client, "/stream", hdr)
	}
	admit := func(t *testing.T, client *http.Client, hdr http.Header) {
		t.Helper()
		c := open(t, client, hdr)
		if c.resp.StatusCode != http.StatusOK {
			t.Fatalf("X-Forwarded-For %q: status %d, want 200", hdr.Values("X-Forwarded-For"), c.resp.StatusCode)
		}
		streams = append(streams, c)
	}
	refuse := func(t *testing.T, client *http.Client, hdr http.Header) {
		t.Helper()
		expectRejected(t, open(t, client, hdr))
	}

	// Two clients through the proxy are counted apart, by the address
	// the proxy names…
	admit(t, proxy, xff("203.0.113.1"))
	c, _, err := ts.dialWSVia(t, proxy, "/stream", xff("203.0.113.2"))
	if err != nil {
		t.Fatalf("a second forwarded client: %v", err)
	}
	conns = append(conns, c)
	// …and each of them only once.
	refuse(t, proxy, xff("203.0.113.1"))
	c, resp, err := ts.dialWSVia(t, proxy, "/stream", xff("203.0.113.2"))
	expectWSRejected(t, c, resp, err)
	// The proxy's own requests count for its own address.
	admit(t, proxy, nil)
	refuse(t, proxy, nil)

	// An untrusted peer cannot choose the address it is counted by.
	admit(t, untrusted, xff("198.51.100.1"))
	refuse(t, untrusted, xff("198.51.100.2"))
	refuse(t, untrusted, nil)

	// Right to left: the client wrote 6.6.6.6 itself, the proxy appended
	// 10.0.0.5.
	admit(t, proxy, xff("6.6.6.6, 10.0.0.5"))
	refuse(t, proxy, xff("10.0.0.5"))
	refuse(t, proxy, xff("6.6.6.7", "10.0.0.5")) // one value per header line
	admit(t, proxy, xff("6.6.6.6"))

	served(t, f, "behind a proxy", streams, conns)

	t.Run("chain of proxies", func(t *testing.T) {
		opts := opts
		opts.TrustedProxies = append(opts.TrustedProxies, netip.MustParsePrefix("10.0.0.0/8"))
		ts := newServer(t, opts, Static(ch))
		a := ts.openSSEVia(t, proxy, "/stream", xff("1.2.3.4, 198.51.100.7, 10.1.1.1"))
		if a.resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", a.resp.StatusCode)
		}
		// Counted as 198.51.100.7: the last address no trusted proxy has.
		expectRejected(t, ts.openSSEVia(t, proxy, "/stream", xff("198.51.100.7")))
		b := ts.openSSEVia(t, proxy, "/stream", xff("1.2.3.4"))
		if b.resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", b.resp.StatusCode)
		}
		served(t, f, "chain", []*sseClient{a, b}, nil)
	})
}

// TestLimitLongResumeID: an over-long resume id is a gap, never an error.
func TestLimitLongResumeID(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute, MaxClients: 10}, Static(ch))
	ids := publishN(t, f, ch, "e", 2)
	long := strings.Repeat("7", 200)

	c := ts.stream(t, "/stream", http.Header{"Last-Event-Id": {long}})
	checkSSEHeaders(t, c.resp.Header)
	wc := ts.ws(t, "?lastEventId="+long, v1Opts)

	gap := c.next(t)
	want := fmt.Sprintf(`{"lastEventId":%q,"next":%q}`, long[:MaxResumeID], ids[0])
	if gap.Name != "gap" || gap.Data != want {
		t.Fatalf("first event %s %s, want gap %s", gap.Name, gap.Data, want)
	}
	c.expectData(t, "e0", "e1")
	expectV1(t, wc, "", "gap", want)
	expectV1(t, wc, ids[0], "message", `"e0"`)
	expectV1(t, wc, ids[1], "message", `"e1"`)
}
