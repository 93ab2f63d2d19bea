package downstream

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

func TestCORS(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	opts := Options{Heartbeat: time.Minute, CORSOrigins: []string{"https://app.example.com/"}}
	ts := newServer(t, opts, Static(ch))
	opts.CORSOrigins = []string{"*"}
	anyTS := newServer(t, opts, Static(ch))

	// works checks that the stream delivers events.
	works := func(t *testing.T, c *sseClient) {
		t.Helper()
		checkSSEHeaders(t, c.resp.Header)
		f.text(t, "hi")
		c.expectData(t, "hi")
	}
	noCORS := func(t *testing.T, h http.Header) {
		t.Helper()
		for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("%s: %q, want none", k, v)
			}
		}
	}

	for _, origin := range []string{"https://app.example.com", "HTTPS://App.Example.COM"} {
		t.Run("allowed "+origin, func(t *testing.T) {
			c := ts.stream(t, "/stream", http.Header{"Origin": {origin}})
			h := c.resp.Header
			if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != origin {
				t.Errorf("Access-Control-Allow-Origin: %q, want %q", got, origin)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != "true" {
				t.Errorf("Access-Control-Allow-Credentials: %q, want true", got)
			}
			if !slices.Contains(h.Values("Vary"), "Origin") {
				t.Errorf("Vary: %q, want Origin", h.Values("Vary"))
			}
			works(t, c)
		})
	}
	t.Run("disallowed", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example", "https://app.example.com.evil.example", "null"} {
			resp, body := ts.request(t, http.MethodGet, "/stream", http.Header{"Origin": {origin}})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("origin %s: status %d, want 403", origin, resp.StatusCode)
			}
			if strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
				t.Errorf("origin %s: got a stream: %q", origin, body)
			}
			noCORS(t, resp.Header)
		}
	})
	t.Run("any", func(t *testing.T) {
		c := anyTS.stream(t, "/stream", http.Header{"Origin": {"https://anywhere.example"}})
		if got := c.resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
			t.Errorf("Access-Control-Allow-Origin: %q, want *", got)
		}
		if got := c.resp.Header.Values("Access-Control-Allow-Credentials"); len(got) > 0 {
			t.Errorf("Access-Control-Allow-Credentials: %q with *, want none", got)
		}
		works(t, c)
	})
	t.Run("preflight", func(t *testing.T) {
		resp, body := ts.request(t, http.MethodOptions, "/stream", http.Header{
			"Origin":                         {"https://app.example.com"},
			"Access-Control-Request-Method":  {"GET"},
			"Access-Control-Request-Headers": {"last-event-id"},
		})
		if resp.StatusCode != http.StatusNoContent || body != "" {
			t.Fatalf("status %d, body %q; want 204 and none", resp.StatusCode, body)
		}
		h := resp.Header
		if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("allow origin %q, credentials %q", h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"))
		}
		if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("Access-Control-Allow-Methods: %q, want GET", h.Get("Access-Control-Allow-Methods"))
		}
		if !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "last-event-id") {
			t.Errorf("Access-Control-Allow-Headers: %q, want Last-Event-ID", h.Get("Access-Control-Allow-Headers"))
		}
		resp, _ = ts.request(t, http.MethodOptions, "/stream", http.Header{
			"Origin":                        {"https://evil.example"},
			"Access-Control-Request-Method": {"GET"},
		})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("preflight from a foreign origin: status %d, want 403", resp.StatusCode)
		}
		noCORS(t, resp.Header)
	})
	t.Run("same origin", func(t *testing.T) {
		c := ts.stream(t, "/stream", http.Header{"Origin": {ts.URL}})
		noCORS(t, c.resp.Header)
		works(t, c)
	})
	t.Run("no origin", func(t *testing.T) {
		c := ts.stream(t, "/stream", nil)
		noCORS(t, c.resp.Header)
		works(t, c)
	})
}

// checkRetryAfter checks a 503 with a Retry-After of 5 to 15 seconds.
func checkRetryAfter(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 5 || ra > 15 {
		t.Errorf("Retry-After %q, want 5 to 15 seconds", resp.Header.Get("Retry-After"))
	}
}

func TestOverload(t *testing.T) {
	tooMany := func(*http.Request) (*bridge.Channel, error) {
		return nil, fmt.Errorf("open /ticker/x: %w", bridge.ErrTooManyChannels)
	}
	overloadRE := regexp.MustCompile(`^retry: ([0-9]+)\n\nevent: overload\ndata: too many connections\n\n$`)

	t.Run("sse retry", func(t *testing.T) {
		ts := newServer(t, Options{}, tooMany)
		for range 5 {
			c := ts.stream(t, "/stream", nil)
			checkSSEHeaders(t, c.resp.Header)
			ev := c.next(t)
			if ev.Name != "overload" || ev.Data != "too many connections" || ev.ID != "" {
				t.Fatalf("got %+v, want one overload event", ev)
			}
			c.expectEOF(t)
			r, ok := c.p.Retry()
			if !ok || r < 5*time.Second || r > 15*time.Second {
				t.Errorf("retry %v, want 5 to 15 s", r)
			}
			if !overloadRE.MatchString(c.raw.String()) {
				t.Errorf("stream %q, want a retry and one overload event", c.raw.String())
			}
		}
	})
	t.Run("sse reject", func(t *testing.T) {
		ts := newServer(t, Options{OverloadReject: true}, tooMany)
		resp, _ := ts.request(t, http.MethodGet, "/stream", http.Header{"Accept": {"text/event-stream"}})
		checkRetryAfter(t, resp)
	})
	t.Run("logged", func(t *testing.T) {
		logs := new(wstest.Buffer)
		ts := serve(t, New(Options{Logger: wstest.Logger(t, logs)}), tooMany)
		c := ts.stream(t, "/stream?access_token=SECRET", nil)
		c.next(t)
		c.expectEOF(t)
		line := logs.String()
		for _, want := range []string{`"reason":"overload"`, `"path":"/stream"`, `"transport":"sse"`, `"message":"client session ended"`} {
			if !strings.Contains(line, want) {
				t.Errorf("log %s: want %s", line, want)
			}
		}
		if strings.Contains(line, "SECRET") {
			t.Errorf("log %s: has the query's token", line)
		}
	})
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("websocket reject=%v", reject), func(t *testing.T) {
			ts := newServer(t, Options{OverloadReject: reject}, tooMany)
			_, resp, err := ts.dialWS(t, "", nil)
			if err == nil {
				t.Fatal("the WebSocket was accepted")
			}
			checkRetryAfter(t, resp)
		})
	}
	t.Run("not found", func(t *testing.T) {
		ts := newServer(t, Options{}, func(*http.Request) (*bridge.Channel, error) { return nil, ErrNotFound })
		resp, _ := ts.request(t, http.MethodGet, "/stream", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("SSE: status %d, want 404", resp.StatusCode)
		}
		_, resp, err := ts.dialWS(t, "", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("WebSocket: %v, want 404", err)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		ts := newServer(t, Options{}, func(*http.Request) (*bridge.Channel, error) { return nil, errors.New("broken") })
		resp, _ := ts.request(t, http.MethodGet, "/stream", nil)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
}

// expectSentAway checks that each stream ends, telling its client to come
// back after short to 2*short, and that each WebSocket is closed with 1001.
func expectSentAway(t *testing.T, short time.Duration, streams []*sseClient, conns []*websocket.Conn) {
	t.Helper()
	for i, c := range streams {
		c.expectEOF(t)
		if r, _ := c.p.Retry(); r < short || r > 2*short {
			t.Errorf("stream %d: retry %v at the end, want %v to %v", i, r, short, 2*short)
		}
	}
	for i, c := range conns {
		if code := expectClose(t, c); code != websocket.StatusGoingAway {
			t.Errorf("WebSocket %d: closed with %v, want 1001", i, code)
		}
	}
}

func TestShutdown(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	const short = 100 * time.Millisecond
	ts := newServer(t, Options{Heartbeat: time.Minute, ShutdownRetry: short}, Static(ch))
	streams := []*sseClient{ts.stream(t, "/stream", nil), ts.stream(t, "/stream", nil)}
	conns := []*websocket.Conn{
		ts.ws(t, "", nil),
		ts.ws(t, "", &websocket.DialOptions{Subprotocols: []string{SubprotocolV1}}),
	}
	id := publish(t, f, ch, websocket.MessageText, []byte("x"))
	for _, c := range streams {
		c.expectData(t, "x")
	}
	expectText(t, conns[0], "x")
	expectText(t, conns[1], `{"id":"`+id+`","event":"message","data":"x"}`)

	ts.s.Shutdown()
	expectSentAway(t, short, streams, conns)
	retryRE := regexp.MustCompile(`\n\nretry: ([0-9]+)\n\n$`)
	for i, c := range streams {
		if !retryRE.MatchString(c.raw.String()) {
			t.Errorf("stream %d: %q, want it to end with a retry", i, c.raw.String())
		}
	}
	wstest.Eventually(t, "the subscriptions to end", func() bool { return clients(ch) == 0 })

	// A client that comes after the shutdown is sent away the same way.
	c := ts.stream(t, "/stream", nil)
	c.expectEOF(t)
	if r, _ := c.p.Retry(); r < short || r > 2*short {
		t.Errorf("retry %v after shutdown, want %v to %v", r, short, 2*short)
	}
}

func TestMethods(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, _ := ts.request(t, m, "/stream", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: Allow %q", m, got)
		}
	}

	resp, body := ts.request(t, http.MethodHead, "/stream", nil)
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD: status %d, body %q; want 200 and no body", resp.StatusCode, body)
	}
	checkSSEHeaders(t, resp.Header)

	resp, body = ts.request(t, http.MethodOptions, "/stream", nil)
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("OPTIONS: status %d, body %q; want 204", resp.StatusCode, body)
	}
	wstest.Eventually(t, "no clients", func() bool { return clients(ch) == 0 })
}

// TestChannelClosed: when a channel closes under its clients, SSE clients
// are told to come back soon and WebSocket clients are closed with 1001;
// the closed channel then answers 503.
func TestChannelClosed(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	const short = 100 * time.Millisecond
	ts := newServer(t, Options{Heartbeat: time.Minute, ShutdownRetry: short}, Static(ch))
	streams := []*sseClient{ts.stream(t, "/stream", nil), ts.stream(t, "/stream", nil)}
	conns := []*websocket.Conn{ts.ws(t, "", nil), ts.ws(t, "", v1Opts)}
	f.text(t, "x")
	for _, c := range streams {
		c.expectData(t, "x")
	}
	for _, c := range conns {
		readWS(t, c)
	}

	ch.Close()
	expectSentAway(t, short, streams, conns)
	resp, _ := ts.request(t, http.MethodGet, "/stream", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("closed channel: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
