package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// tickerConfig is a templated channel on feed f, with at most two symbols
// open at once.
func tickerConfig(f *feed, overload string) string {
	return fmt.Sprintf(`
[server]
shutdown_grace = "3s"
overload = "%s"

[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z0-9]{1,12}}"
url = "ws://%s/ws/{symbol}?s={symbol}"
subscribe = ['{"op":"sub","symbol":"{symbol}"}']
linger = "200ms"
max_channels = 2
`, overload, f.host())
}

// openTicker opens a stream of the ticker channel for sym and waits for
// the connection to the feed that it opens.
func openTicker(t testing.TB, client *http.Client, in *instance, f *feed, sym string) (*sseStream, *feedConn) {
	t.Helper()
	s := openSSE(t, client, in.url("/ticker/"+sym), nil)
	return s, f.connTo(t, "/ws/"+sym+"?s="+sym)
}

// feedURLRE is the only shape of URL the ticker channel may dial.
var feedURLRE = regexp.MustCompile(`^/ws/([a-z0-9]{1,12})\?s=([a-z0-9]{1,12})$`)

// checkFeedURLs checks that every connection to the feed was for a symbol
// the template allows, in both places.
func checkFeedURLs(t *testing.T, f *feed) {
	t.Helper()
	for _, u := range f.urls() {
		m := feedURLRE.FindStringSubmatch(u)
		if m == nil || m[1] != m[2] {
			t.Errorf("the feed was dialed at %q", u)
		}
	}
}

// TestTemplatedChannels: one channel, and one upstream connection, per
// symbol, each with its own subscribe frames and events.
func TestTemplatedChannels(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, tickerConfig(f, "retry"))
	client := newHTTPClient(t)

	btc, upBTC := openTicker(t, client, in, f, "btc")
	eth, upETH := openTicker(t, client, in, f, "eth")
	if got := upBTC.waitFrames(t, 1); got[0] != `{"op":"sub","symbol":"btc"}` {
		t.Errorf("btc subscribe frame %q", got[0])
	}
	if got := upETH.waitFrames(t, 1); got[0] != `{"op":"sub","symbol":"eth"}` {
		t.Errorf("eth subscribe frame %q", got[0])
	}

	// Each client gets its own symbol's events only.
	upBTC.send(t, "btc 1")
	upETH.send(t, "eth 1")
	upBTC.send(t, "btc 2")
	upETH.send(t, "eth 2")
	for _, want := range []string{"btc 1", "btc 2"} {
		if ev := btc.next(t); ev.Data != want {
			t.Errorf("btc client: got %q, want %q", ev.Data, want)
		}
	}
	for _, want := range []string{"eth 1", "eth 2"} {
		if ev := eth.next(t); ev.Data != want {
			t.Errorf("eth client: got %q, want %q", ev.Data, want)
		}
	}

	// Another btc client shares the btc connection.
	btc2 := openSSE(t, client, in.url("/ticker/btc"), nil)
	upBTC.send(t, "btc 3")
	for _, s := range []*sseStream{btc, btc2} {
		if ev := s.next(t); ev.Data != "btc 3" {
			t.Errorf("btc clients: got %q, want btc 3", ev.Data)
		}
	}
	if n := f.count(); n != 2 {
		t.Errorf("%d connections to the feed, want 2", n)
	}

	// A symbol the template's regexp refuses is not found.
	for _, path := range []string{"/ticker/BTC", "/ticker/BTC!", "/ticker/abcdefghijklm", "/ticker/", "/ticker/btc/x"} {
		resp, _ := getSSE(t, client, in.url(path), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}

	// A third symbol is over max_channels: EventSource is told to come back
	// later, while btc and eth keep going.
	resp, sol := getSSE(t, client, in.url("/ticker/sol"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a symbol over max_channels: status %d, want 200 and an overload event", resp.StatusCode)
	}
	checkOverload(t, sol)
	if n := f.count(); n != 2 {
		t.Errorf("%d connections to the feed after a refused symbol, want 2", n)
	}
	// A WebSocket client gets 503 and Retry-After.
	wsResp := rawRequest(t, in.addr, "GET /ticker/sol HTTP/1.1\r\nHost: "+in.addr+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	checkRetryAfter(t, "WebSocket over max_channels", wsResp)

	upBTC.send(t, "btc 4")
	upETH.send(t, "eth 3")
	for _, s := range []*sseStream{btc, btc2} {
		if ev := s.next(t); ev.Data != "btc 4" {
			t.Errorf("btc clients: got %q, want btc 4", ev.Data)
		}
	}
	if ev := eth.next(t); ev.Data != "eth 3" {
		t.Errorf("eth client: got %q, want eth 3", ev.Data)
	}

	// Once the btc clients have left and the channel has lingered, its
	// slot is free for another symbol.
	btc.close()
	btc2.close()
	upBTC.waitClosed(t)
	var sol2 *sseStream
	wstest.Eventually(t, "a slot for sol", func() bool {
		resp, s := getSSE(t, client, in.url("/ticker/sol"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sol: status %d, want 200", resp.StatusCode)
		}
		// Refused, the stream ends at once; accepted, sol connects.
		var refused bool
		wstest.Eventually(t, "sol to be opened or refused", func() bool {
			select {
			case it := <-s.items:
				if it.err != nil || it.ev.Name != "overload" {
					t.Fatalf("sol: got %+v before any event was sent", it)
				}
				refused = true
				return true
			default:
				return f.openConn("/ws/sol?s=sol") != nil
			}
		})
		if refused {
			s.close()
			return false
		}
		sol2 = s
		return true
	})
	upSOL := f.connTo(t, "/ws/sol?s=sol")
	if got := upSOL.waitFrames(t, 1); got[0] != `{"op":"sub","symbol":"sol"}` {
		t.Errorf("sol subscribe frame %q", got[0])
	}
	upSOL.send(t, "sol 1")
	if ev := sol2.next(t); ev.Data != "sol 1" {
		t.Errorf("sol client: got %q, want sol 1", ev.Data)
	}
	upETH.send(t, "eth 4")
	if ev := eth.next(t); ev.Data != "eth 4" {
		t.Errorf("eth client: got %q, want eth 4", ev.Data)
	}
	if n := f.count(); n != 3 {
		t.Errorf("%d connections to the feed, want 3 (btc, eth, sol)", n)
	}
	if n := f.open(); n != 2 {
		t.Errorf("%d connections open, want 2 (eth, sol)", n)
	}
	checkFeedURLs(t, f)
}

// checkOverload checks that a stream is an overload notice: a retry of 5
// to 15 s, one overload event, and the end.
func checkOverload(t *testing.T, s *sseStream) {
	t.Helper()
	evs, retry := s.end(t)
	if len(evs) != 1 || evs[0].Name != "overload" || evs[0].Data != "too many connections" {
		t.Errorf("overload stream: events %+v, want one overload event", evs)
	}
	if retry < 5*time.Second || retry > 15*time.Second {
		t.Errorf("overload stream: retry %s, want 5s to 15s", retry)
	}
}

// checkRetryAfter checks a 503 with a Retry-After of 5 to 15 s.
func checkRetryAfter(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d, want 503", what, resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 5 || ra > 15 {
		t.Errorf("%s: Retry-After %q, want 5 to 15 seconds", what, resp.Header.Get("Retry-After"))
	}
}

// TestTemplatedOverloadReject: with overload = "reject", a symbol over
// max_channels gets 503 on SSE too.
func TestTemplatedOverloadReject(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, tickerConfig(f, "reject"))
	client := newHTTPClient(t)
	btc := openSSE(t, client, in.url("/ticker/btc"), nil)
	openSSE(t, client, in.url("/ticker/eth"), nil)
	f.connTo(t, "/ws/btc?s=btc")
	f.connTo(t, "/ws/eth?s=eth")

	resp, _ := getSSE(t, client, in.url("/ticker/sol"), nil)
	checkRetryAfter(t, "SSE over max_channels", resp)

	f.openConn("/ws/btc?s=btc").send(t, "btc 1")
	if ev := btc.next(t); ev.Data != "btc 1" {
		t.Errorf("btc client: got %q, want btc 1", ev.Data)
	}
	if n := f.count(); n != 2 {
		t.Errorf("%d connections to the feed, want 2", n)
	}
}

// TestTemplateInjection: a path variable reaches the upstream URL and the
// subscribe frames only when the template's regexp accepts it; nothing a
// client puts in the request can make ws2sse dial anything else.
func TestTemplateInjection(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, tickerConfig(f, "retry"))

	for _, target := range []string{
		"/ticker/..%2Fadmin",
		"/ticker/../admin",
		"/ticker/a%2Fb",
		"/ticker/a%22b",
		`/ticker/a"b`,
		"/ticker/a%5C%22b",
		"/ticker/btc%3Fs=eth",
		"/ticker/btc%23x",
		"/ticker/btc%00",
		"/ticker/btc%0D%0AX-Injected:%201",
		"/ticker/btc%20",
		"/ticker/%E2%82%BF",
		"/ticker/btc%7D%22,%22x%22:%22",
	} {
		resp := rawRequest(t, in.addr, "GET "+target+" HTTP/1.1\r\nHost: "+in.addr+
			"\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
		t.Logf("%s: %s %s", target, resp.Status, resp.Header.Get("Location"))
		switch {
		case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusBadRequest:
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			// A cleaned path: following it must not open a channel either.
			loc := resp.Header.Get("Location")
			if r2 := rawRequest(t, in.addr, "GET "+loc+" HTTP/1.1\r\nHost: "+in.addr+
				"\r\nConnection: close\r\n\r\n"); r2.StatusCode != http.StatusNotFound {
				t.Errorf("%s: redirected to %s, which answers %d, want 404", target, loc, r2.StatusCode)
			}
		default:
			t.Errorf("%s: status %d, want 404", target, resp.StatusCode)
		}
	}
	if urls := f.urls(); len(urls) != 0 {
		t.Errorf("refused requests dialed the feed: %q", urls)
	}

	// Query parameters are not path variables.
	s := openSSE(t, newHTTPClient(t), in.url("/ticker/btc?symbol=eth&s=eth"), nil)
	up := f.connTo(t, "/ws/btc?s=btc")
	if got := up.waitFrames(t, 1); got[0] != `{"op":"sub","symbol":"btc"}` {
		t.Errorf("subscribe frame %q", got[0])
	}
	up.send(t, "btc 1")
	if ev := s.next(t); ev.Data != "btc 1" {
		t.Errorf("got %q, want btc 1", ev.Data)
	}
	if urls := f.urls(); len(urls) != 1 {
		t.Errorf("the feed was dialed %d times, want once: %q", len(urls), urls)
	}
	checkFeedURLs(t, f)
}

// TestTemplateEscaping: with the default variable pattern, a value may hold
// any character but "/"; it reaches the feed as that value, URL-escaped in
// the URL and JSON-escaped in the subscribe frame, and can add nothing.
func TestTemplateEscaping(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[[channel]]
name = "room"
path = "/room/{id}"
url = "ws://%s/ws/{id}?r={id}&fixed=1"
subscribe = ['{"op":"join","room":"{id}"}']
`, f.host()))
	client := newHTTPClient(t)

	for _, id := range []string{
		`a"b`,
		`x?fixed=2&r=y#frag`,
		`"},"op":"leave`,
		`back\slash`,
		"%41 percent+plus",
		"naïve 🎉 <tag>",
		"...",
	} {
		s := openSSE(t, client, in.url("/room/"+url.PathEscape(id)), nil)
		var up *feedConn
		wstest.Eventually(t, "a connection for "+id, func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, fc := range f.conns {
				if fc.path == "/ws/"+id {
					up = fc
					return true
				}
			}
			return false
		})
		if !reflect.DeepEqual(up.query, url.Values{"r": {id}, "fixed": {"1"}}) {
			t.Errorf("id %q: the feed got the query %q (%s)", id, up.query, up.url)
		}
		frame := up.waitFrames(t, 1)[0]
		var got map[string]string
		if err := json.Unmarshal([]byte(frame), &got); err != nil {
			t.Errorf("id %q: subscribe frame %s is not JSON: %v", id, frame, err)
		} else if !reflect.DeepEqual(got, map[string]string{"op": "join", "room": id}) {
			t.Errorf("id %q: subscribe frame %s", id, frame)
		}
		up.send(t, "hello "+id)
		if ev := s.next(t); ev.Data != "hello "+id {
			t.Errorf("id %q: got %q", id, ev.Data)
		}
	}
}

// TestTemplateValuesKeptApart: when a variable's pattern lets it hold "/",
// two requests whose values differ still get two channels, each with its
// own upstream and events; and a value that reads like another variable
// reaches the feed as itself.
func TestTemplateValuesKeptApart(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[[channel]]
name = "pair"
path = "/pair/{a:.+}-{b:.+}"
url = "ws://%s/ws/{a}?b={b}"
subscribe = ['{"a":"{a}","b":"{b}"}']
`, f.host()))
	client := newHTTPClient(t)

	cases := []struct{ path, feedURL, frame, name string }{
		{"/pair/x/y-z", "/ws/x%2Fy?b=z", `{"a":"x/y","b":"z"}`, "pair/x%2Fy/z"},
		{"/pair/x-y/z", "/ws/x?b=y%2Fz", `{"a":"x","b":"y/z"}`, "pair/x/y%2Fz"},
		{"/pair/%7Bb%7D-q", "/ws/%7Bb%7D?b=q", `{"a":"{b}","b":"q"}`, "pair/{b}/q"},
		{"/pair/a%20b-50%25", "/ws/a%20b?b=50%25", `{"a":"a b","b":"50%"}`, "pair/a b/50%25"},
	}
	streams := make([]*sseStream, len(cases))
	ups := make([]*feedConn, len(cases))
	for i, c := range cases {
		streams[i] = openSSE(t, client, in.url(c.path), nil)
		ups[i] = f.connTo(t, c.feedURL)
		if got := ups[i].waitFrames(t, 1)[0]; got != c.frame {
			t.Errorf("%s: subscribe frame %s, want %s", c.path, got, c.frame)
		}
	}
	for i, c := range cases {
		ups[i].send(t, "for "+c.path)
	}
	for i, c := range cases {
		if ev := streams[i].next(t); ev.Data != "for "+c.path {
			t.Errorf("%s: got %q, want the events of its own feed", c.path, ev.Data)
		}
	}
	// /channels gives each channel's path as requested, escaped, so that
	// the dashboard can request it again.
	doc, body := getChannels(t, client, in)
	for _, c := range cases {
		if ch := doc.channel(c.name); ch == nil || ch.Clients != 1 || ch.Path != c.path {
			t.Errorf("/channels has no channel %q at %s with one client:\n%s", c.name, c.path, body)
		}
	}
}
