package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// The operator's view of ws2sse (SPEC sections 7 to 9): /readyz, /metrics,
// /channels, the access log, [auth] and -healthcheck.

// closedAddr is an address nothing listens on: port 1 needs privileges to
// bind, so no test can be listening there.
const closedAddr = "127.0.0.1:1"

// movableFeed is a feed that can be stopped, so that connections to its
// address are refused, and started again on the same address.
type movableFeed struct {
	t    testing.TB
	addr string // host:port, fixed for the feed's life

	mu  sync.Mutex
	cur *feed // nil while stopped; guarded by mu
}

func newMovableFeed(t testing.TB) *movableFeed {
	f := newFeed(t)
	return &movableFeed{t: t, addr: f.host(), cur: f}
}

// feed returns the running feed; it must be running.
func (m *movableFeed) feed() *feed {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		m.t.Fatal("the feed is stopped")
	}
	return m.cur
}

// stop closes the listener and drops every connection: from now on a dial
// is refused.
func (m *movableFeed) stop() {
	m.mu.Lock()
	f := m.cur
	m.cur = nil
	m.mu.Unlock()
	f.close()
}

// start serves a new feed on the same address.
func (m *movableFeed) start() *feed {
	m.t.Helper()
	var ln net.Listener
	wstest.Eventually(m.t, "the feed's address to be free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", m.addr)
		return err == nil
	})
	f := &feed{}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener.Close()
	f.srv.Listener = ln
	f.srv.Start()
	m.t.Cleanup(f.close)
	m.mu.Lock()
	m.cur = f
	m.mu.Unlock()
	return f
}

// getBody GETs url and returns the status and the body.
func getBody(t testing.TB, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want and returns that body.
func waitStatus(t testing.TB, client *http.Client, url string, want int) string {
	t.Helper()
	var code int
	var body string
	wstest.Eventually(t, fmt.Sprintf("GET %s to answer %d", url, want), func() bool {
		code, body = getBody(t, client, url)
		return code == want
	})
	return body
}

// TestReadyz: /readyz is 200 while every eager channel's upstream is
// connected, 503 naming the channel and why (with the feed's credentials
// redacted) while one is not, and 200 again once it is back. Lazy channels,
// templated ones included, never make it fail.
func TestReadyz(t *testing.T) {
	t.Parallel()
	mf := newMovableFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[upstream]
backoff_min = "50ms"
backoff_max = "200ms"

[[channel]]
name = "eager"
path = "/eager"
url = "ws://feeduser:secret@%[1]s/ws/eager?token=secret"
lazy = false

[[channel]]
name = "lazy"
path = "/lazy"
url = "ws://feeduser:secret@%[2]s/ws/lazy?token=secret"
status_events = true

[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z]{1,8}}"
url = "ws://%[2]s/ws/{symbol}"
status_events = true
`, mf.addr, closedAddr))
	client := newHTTPClient(t)

	if body := waitStatus(t, client, in.url("/readyz"), http.StatusOK); body != "ready\n" {
		t.Errorf("/readyz with the eager channel up: body %q, want \"ready\\n\"", body)
	}

	// Lazy channels whose feed refuses every connection, with clients that
	// see them down, leave it ready.
	for _, path := range []string{"/lazy", "/ticker/btc"} {
		s := openSSE(t, client, in.url(path), nil)
		waitDownEvent(t, s)
	}
	if code, body := getBody(t, client, in.url("/readyz")); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz with lazy channels down: %d %q, want 200 \"ready\\n\"", code, body)
	}

	// The eager channel's feed goes away and refuses reconnections.
	mf.stop()
	var body string
	wstest.Eventually(t, "/readyz to report the eager channel down", func() bool {
		var code int
		code, body = getBody(t, client, in.url("/readyz"))
		return code == http.StatusServiceUnavailable && strings.Contains(body, "channel eager: upstream down: ")
	})
	// At first it says the connection closed; then that reconnecting fails.
	wstest.Eventually(t, "/readyz to say why reconnecting fails", func() bool {
		var code int
		code, body = getBody(t, client, in.url("/readyz"))
		return code == http.StatusServiceUnavailable && strings.Contains(body, "refused")
	})
	t.Logf("/readyz while down: %q", body)
	if lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "channel eager: upstream down: ") {
		t.Errorf("/readyz lists %d channels, want only the eager one: %q", len(lines), body)
	}
	// The error names the URL it dialed, redacted.
	if strings.Contains(body, "secret") || !strings.Contains(body, "token=REDACTED") {
		t.Errorf("/readyz does not redact the feed's credentials: %q", body)
	}

	// The feed comes back on the same address.
	mf.start()
	if body := waitStatus(t, client, in.url("/readyz"), http.StatusOK); body != "ready\n" {
		t.Errorf("/readyz once the feed is back: body %q, want \"ready\\n\"", body)
	}
}

// waitDownEvent reads a stream until its channel says its upstream is down.
func waitDownEvent(t testing.TB, s *sseStream) {
	t.Helper()
	for {
		ev := s.next(t)
		if ev.Name == "upstream" && strings.Contains(ev.Data, `"state":"down"`) {
			return
		}
	}
}

// metrics is one scrape of /metrics.
type metrics map[string]*dto.MetricFamily

// scrape reads /metrics as Prometheus would.
func scrape(t testing.TB, client *http.Client, in *instance) metrics {
	t.Helper()
	resp, err := client.Get(in.url("/metrics"))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not in the Prometheus text format: %v", err)
	}
	return mfs
}

// value returns the value of the series of name whose labels are the
// name/value pairs given, and whether there is one.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	mf := m[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, s := range mf.GetMetric() {
		if len(s.GetLabel())*2 != len(labels) {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			if !slices.ContainsFunc(s.GetLabel(), func(lp *dto.LabelPair) bool {
				return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.GetCounter().GetValue(), true
		case s.Gauge != nil:
			return s.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// get returns the value of a series that must exist.
func (m metrics) get(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.value(name, labels...)
	if !ok {
		t.Fatalf("/metrics has no series %s%v", name, labels)
	}
	return v
}

// waitMetric scrapes until the series has the value want.
func waitMetric(t testing.TB, client *http.Client, in *instance, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	var ok bool
	deadline := time.Now().Add(waitTimeout)
	for {
		got, ok = scrape(t, client, in).value(name, labels...)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("/metrics has no series %s%v after %s, want one of %v", name, labels, waitTimeout, want)
	}
	t.Fatalf("%s%v is %v after %s, want %v", name, labels, got, waitTimeout, want)
}

// TestMetricsClientsAndEvents: the per-channel metrics move as clients come
// and go and events flow: clients per transport, events in, events and
// bytes out per transport.
func TestMetricsClientsAndEvents(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"
`+feedChannel(f))
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	waitMetric(t, client, in, 1, "ws2sse_upstream_up", "channel", "feed")

	m := scrape(t, client, in)
	for _, tr := range []string{"sse", "websocket"} {
		if got := m.get(t, "ws2sse_clients", "channel", "feed", "transport", tr); got != 0 {
			t.Errorf("ws2sse_clients{feed,%s} is %v before any client, want 0", tr, got)
		}
	}
	if got := m.get(t, "ws2sse_events_in_total", "channel", "feed"); got != 0 {
		t.Errorf("ws2sse_events_in_total{feed} is %v before any event, want 0", got)
	}
	if got := m.get(t, "ws2sse_channels_open", "channel", "feed"); got != 1 {
		t.Errorf("ws2sse_channels_open{feed} is %v, want 1", got)
	}

	// An SSE client comes, reads three events, and leaves.
	s := openSSE(t, client, in.url("/feed"), nil)
	waitMetric(t, client, in, 1, "ws2sse_clients", "channel", "feed", "transport", "sse")
	var sseBytes int
	for i := range 3 {
		msg := fmt.Sprintf(`{"sse":%d}`, i)
		up.send(t, msg)
		ev := s.next(t)
		if ev.Data != msg {
			t.Fatalf("the SSE client got %q, want %q", ev.Data, msg)
		}
		sseBytes += len(sse.AppendEvent(nil, ev.ID, ev.Name, []byte(ev.Data)))
	}
	waitMetric(t, client, in, 3, "ws2sse_events_out_total", "channel", "feed", "transport", "sse")
	m = scrape(t, client, in)
	if got := m.get(t, "ws2sse_events_in_total", "channel", "feed"); got != 3 {
		t.Errorf("ws2sse_events_in_total{feed} is %v after 3 events, want 3", got)
	}
	if got := m.get(t, "ws2sse_bytes_out_total", "channel", "feed", "transport", "sse"); got != float64(sseBytes) {
		t.Errorf("ws2sse_bytes_out_total{feed,sse} is %v, want %d (the 3 events as sent)", got, sseBytes)
	}
	if got := m.get(t, "ws2sse_writes_total", "channel", "feed", "transport", "sse"); got != 3 {
		t.Errorf("ws2sse_writes_total{feed,sse} is %v, want 3 (each event was read before the next was sent)", got)
	}
	s.close()
	waitMetric(t, client, in, 0, "ws2sse_clients", "channel", "feed", "transport", "sse")

	// A WebSocket client comes, reads two events, and leaves.
	ws := dialWS(t, "ws://"+in.addr+"/feed")
	waitMetric(t, client, in, 1, "ws2sse_clients", "channel", "feed", "transport", "websocket")
	var wsBytes int
	for i := range 2 {
		msg := fmt.Sprintf(`{"ws":%d}`, i)
		up.send(t, msg)
		if _, b := readWS(t, ws); string(b) != msg {
			t.Fatalf("the WebSocket client got %q, want %q", b, msg)
		}
		wsBytes += len(msg)
	}
	waitMetric(t, client, in, 2, "ws2sse_events_out_total", "channel", "feed", "transport", "websocket")
	m = scrape(t, client, in)
	if got := m.get(t, "ws2sse_events_in_total", "channel", "feed"); got != 5 {
		t.Errorf("ws2sse_events_in_total{feed} is %v after 5 events, want 5", got)
	}
	if got := m.get(t, "ws2sse_bytes_out_total", "channel", "feed", "transport", "websocket"); got != float64(wsBytes) {
		t.Errorf("ws2sse_bytes_out_total{feed,websocket} is %v, want %d", got, wsBytes)
	}
	if got := m.get(t, "ws2sse_writes_total", "channel", "feed", "transport", "websocket"); got != 2 {
		t.Errorf("ws2sse_writes_total{feed,websocket} is %v, want 2 (a message each)", got)
	}
	// What the SSE client was sent is still counted, and nothing more.
	if got := m.get(t, "ws2sse_events_out_total", "channel", "feed", "transport", "sse"); got != 3 {
		t.Errorf("ws2sse_events_out_total{feed,sse} is %v once the SSE client left, want 3", got)
	}
	ws.Close(1000, "bye")
	waitMetric(t, client, in, 0, "ws2sse_clients", "channel", "feed", "transport", "websocket")
}

// TestMetricsUpstream: ws2sse_upstream_up follows the feed, and
// ws2sse_upstream_reconnects_total counts the connections made after the
// first.
func TestMetricsUpstream(t *testing.T) {
	t.Parallel()
	mf := newMovableFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[upstream]
backoff_min = "50ms"
backoff_max = "200ms"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed"
lazy = false

[[channel]]
name = "refused"
path = "/refused"
url = "ws://%s/ws/refused"
lazy = false
`, mf.addr, closedAddr))
	client := newHTTPClient(t)

	up := mf.feed().conn(t, 1)
	waitMetric(t, client, in, 1, "ws2sse_upstream_up", "channel", "feed")
	m := scrape(t, client, in)
	if got := m.get(t, "ws2sse_upstream_reconnects_total", "channel", "feed"); got != 0 {
		t.Errorf("ws2sse_upstream_reconnects_total{feed} is %v after the first connection, want 0", got)
	}
	if got := m.get(t, "ws2sse_upstream_up", "channel", "refused"); got != 0 {
		t.Errorf("ws2sse_upstream_up{refused} is %v, want 0", got)
	}

	// The feed drops the connection; ws2sse connects again.
	up.c.CloseNow()
	mf.feed().conn(t, 2)
	waitMetric(t, client, in, 1, "ws2sse_upstream_reconnects_total", "channel", "feed")
	waitMetric(t, client, in, 1, "ws2sse_upstream_up", "channel", "feed")

	// The feed goes away for a while: down, and attempts that fail are no
	// reconnections.
	mf.stop()
	waitMetric(t, client, in, 0, "ws2sse_upstream_up", "channel", "feed")
	f := mf.start()
	f.conn(t, 1)
	waitMetric(t, client, in, 1, "ws2sse_upstream_up", "channel", "feed")
	waitMetric(t, client, in, 2, "ws2sse_upstream_reconnects_total", "channel", "feed")
	if got := scrape(t, client, in).get(t, "ws2sse_upstream_reconnects_total", "channel", "refused"); got != 0 {
		t.Errorf("ws2sse_upstream_reconnects_total{refused} is %v for a feed that never answered, want 0", got)
	}
}

// TestMetricsResume: a resume from an id in the replay buffer is a replay
// hit; one from an id it does not hold is a gap.
func TestMetricsResume(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"
`+feedChannel(f, `replay = 10`))
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	s := openSSE(t, client, in.url("/feed"), nil)
	up.send(t, "one")
	first := s.next(t)
	up.send(t, "two")
	s.next(t)
	s.close()

	m := scrape(t, client, in)
	for _, name := range []string{"ws2sse_replay_hits_total", "ws2sse_gaps_total"} {
		if got := m.get(t, name, "channel", "feed"); got != 0 {
			t.Errorf("%s{feed} is %v before any resume, want 0", name, got)
		}
	}

	resumed := openSSE(t, client, in.url("/feed"), http.Header{"Last-Event-Id": {first.ID}})
	if ev := resumed.next(t); ev.Data != "two" {
		t.Fatalf("resuming from the first event got %q %q, want the second", ev.Name, ev.Data)
	}
	waitMetric(t, client, in, 1, "ws2sse_replay_hits_total", "channel", "feed")
	if got := scrape(t, client, in).get(t, "ws2sse_gaps_total", "channel", "feed"); got != 0 {
		t.Errorf("ws2sse_gaps_total{feed} is %v after a resume from a buffered id, want 0", got)
	}

	gapped := openSSE(t, client, in.url("/feed")+"?lastEventId=1-1", nil)
	if ev := gapped.next(t); ev.Name != "gap" {
		t.Fatalf("resuming from an unknown id got event %q, want a gap", ev.Name)
	}
	waitMetric(t, client, in, 1, "ws2sse_gaps_total", "channel", "feed")
	if got := scrape(t, client, in).get(t, "ws2sse_replay_hits_total", "channel", "feed"); got != 1 {
		t.Errorf("ws2sse_replay_hits_total{feed} is %v after a gap, want still 1", got)
	}
}

// stallClient requests path over a connection that reads nothing after the
// request, with a small receive buffer, as a client that stopped reading.
func stallClient(t testing.TB, in *instance, path string, header string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", in.addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + in.addr + "\r\nAccept: text/event-stream\r\n" + header + "\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return c
}

// fillUntil sends large events until done reports true, and fails the test
// when it does not after many.
func fillUntil(t testing.TB, up *feedConn, what string, done func() bool) int {
	t.Helper()
	const maxEvents = 1000
	payload := strings.Repeat("x", 64<<10)
	for n := 0; n < maxEvents; n++ {
		if n%4 == 0 && done() {
			return n
		}
		up.send(t, strconv.Itoa(n)+payload)
	}
	t.Fatalf("%s after %d events of %d bytes", what, maxEvents, len(payload))
	return 0
}

// TestMetricsSlowClient: dropping a client that does not read counts in
// ws2sse_slow_client_disconnects_total.
func TestMetricsSlowClient(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"

[downstream]
queue = 4
`+feedChannel(f))
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	stallClient(t, in, "/feed", "")
	waitMetric(t, client, in, 1, "ws2sse_clients", "channel", "feed", "transport", "sse")
	if got := scrape(t, client, in).get(t, "ws2sse_slow_client_disconnects_total", "channel", "feed"); got != 0 {
		t.Errorf("ws2sse_slow_client_disconnects_total{feed} is %v before any event, want 0", got)
	}
	n := fillUntil(t, up, "the client that does not read was not counted as slow", func() bool {
		v, _ := scrape(t, client, in).value("ws2sse_slow_client_disconnects_total", "channel", "feed")
		return v > 0
	})
	t.Logf("the client that does not read was dropped after %d events", n)
	m := scrape(t, client, in)
	if got := m.get(t, "ws2sse_slow_client_disconnects_total", "channel", "feed"); got != 1 {
		t.Errorf("ws2sse_slow_client_disconnects_total{feed} is %v, want 1", got)
	}
	waitMetric(t, client, in, 0, "ws2sse_clients", "channel", "feed", "transport", "sse")
}

// TestMetricsTemplated: the channels of a template are reported under the
// template's name, never one series per channel, and its counters do not go
// down when one of its channels closes.
func TestMetricsTemplated(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, tickerConfig(f, "retry"))
	client := newHTTPClient(t)

	btc, upBTC := openTicker(t, client, in, f, "btc")
	eth, upETH := openTicker(t, client, in, f, "eth")
	for i := range 3 {
		upBTC.send(t, "btc"+strconv.Itoa(i))
		btc.next(t)
	}
	for i := range 2 {
		upETH.send(t, "eth"+strconv.Itoa(i))
		eth.next(t)
	}
	waitMetric(t, client, in, 5, "ws2sse_events_out_total", "channel", "ticker", "transport", "sse")

	m := scrape(t, client, in)
	for name, mf := range m {
		if !strings.HasPrefix(name, "ws2sse_") {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() == "channel" && lp.GetValue() != "ticker" {
					t.Errorf("%s has a series with channel=%q, want only \"ticker\"", name, lp.GetValue())
				}
			}
		}
		if n := len(mf.GetMetric()); name != "ws2sse_clients" && name != "ws2sse_events_out_total" &&
			name != "ws2sse_bytes_out_total" && name != "ws2sse_writes_total" && n != 1 {
			t.Errorf("%s has %d series, want 1 for the template", name, n)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ws2sse_channels_open", []string{"channel", "ticker"}, 2},
		{"ws2sse_upstream_up", []string{"channel", "ticker"}, 2},
		{"ws2sse_clients", []string{"channel", "ticker", "transport", "sse"}, 2},
		{"ws2sse_events_in_total", []string{"channel", "ticker"}, 5},
	} {
		if got := m.get(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v is %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// btc's last client leaves; once it has lingered, its channel closes,
	// and what it counted stays in the template's totals.
	btc.close()
	upBTC.waitClosed(t)
	waitMetric(t, client, in, 1, "ws2sse_channels_open", "channel", "ticker")
	waitMetric(t, client, in, 5, "ws2sse_events_in_total", "channel", "ticker")
	m = scrape(t, client, in)
	if got := m.get(t, "ws2sse_events_out_total", "channel", "ticker", "transport", "sse"); got != 5 {
		t.Errorf("ws2sse_events_out_total{ticker,sse} is %v once btc closed, want still 5", got)
	}
	if got := m.get(t, "ws2sse_clients", "channel", "ticker", "transport", "sse"); got != 1 {
		t.Errorf("ws2sse_clients{ticker,sse} is %v once btc closed, want 1", got)
	}
	upETH.send(t, "eth2")
	eth.next(t)
	waitMetric(t, client, in, 6, "ws2sse_events_in_total", "channel", "ticker")
}

// TestMetricsTemplatedAllClosed: once every channel of a template has
// closed, its series are still there with the totals they had.
func TestMetricsTemplatedAllClosed(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, tickerConfig(f, "retry"))
	client := newHTTPClient(t)

	for _, sym := range []string{"btc", "eth"} {
		s, up := openTicker(t, client, in, f, sym)
		up.send(t, sym)
		s.next(t)
		s.close()
		up.waitClosed(t)
	}
	wstest.Eventually(t, "both ticker channels to close", func() bool {
		v, ok := scrape(t, client, in).value("ws2sse_channels_open", "channel", "ticker")
		return !ok || v == 0
	})
	m := scrape(t, client, in)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ws2sse_channels_open", []string{"channel", "ticker"}, 0},
		{"ws2sse_clients", []string{"channel", "ticker", "transport", "sse"}, 0},
		{"ws2sse_events_in_total", []string{"channel", "ticker"}, 2},
		{"ws2sse_events_out_total", []string{"channel", "ticker", "transport", "sse"}, 2},
	} {
		got, ok := m.value(c.name, c.labels...)
		if !ok {
			t.Errorf("%s%v is gone once every ticker channel closed, want %v", c.name, c.labels, c.want)
		} else if got != c.want {
			t.Errorf("%s%v is %v once every ticker channel closed, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// deafFeed is a WebSocket upstream that sends on demand and never reads, so
// it never answers a close handshake: ws2sse waits out its close grace
// before it drops the connection.
type deafFeed struct {
	srv  *httptest.Server
	stop chan struct{} // closed when the test ends: handlers return
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[string]*websocket.Conn // by request path; guarded by mu
}

func newDeafFeed(t testing.TB) *deafFeed {
	d := &deafFeed{stop: make(chan struct{}), conns: make(map[string]*websocket.Conn)}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.wg.Add(1)
		defer d.wg.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		d.mu.Lock()
		d.conns[r.URL.Path] = c
		d.mu.Unlock()
		<-d.stop
	}))
	t.Cleanup(func() {
		close(d.stop)
		d.srv.Close()
		d.wg.Wait()
	})
	return d
}

// send waits for a connection to path and sends msg on it.
func (d *deafFeed) send(t testing.TB, path, msg string) {
	t.Helper()
	var c *websocket.Conn
	wstest.Eventually(t, "a connection to "+path, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		c = d.conns[path]
		return c != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("deaf feed: write to %s: %v", path, err)
	}
}

// TestMetricsTemplatedNeverDown: while a templated channel closes, its
// template's counters never go down, even when its upstream is slow to
// close.
func TestMetricsTemplatedNeverDown(t *testing.T) {
	t.Parallel()
	d := newDeafFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z]{1,8}}"
url = "ws://%s/ws/{symbol}"
linger = "0s"

[channel.upstream]
ping_interval = "0s"
read_timeout = "0s"
`, d.srv.Listener.Addr()))
	client := newHTTPClient(t)

	eth := openSSE(t, client, in.url("/ticker/eth"), nil)
	btc := openSSE(t, client, in.url("/ticker/btc"), nil)
	d.send(t, "/ws/eth", "eth")
	eth.next(t)
	d.send(t, "/ws/btc", "btc")
	btc.next(t)
	waitMetric(t, client, in, 2, "ws2sse_events_in_total", "channel", "ticker")

	// btc closes; eth stays open, so the template's series stay. Scrape
	// through the close and a while after: the total must stay 2.
	btc.close()
	var closedAt time.Time
	deadline := time.Now().Add(waitTimeout)
	for closedAt.IsZero() || time.Since(closedAt) < 1500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the btc channel did not close")
		}
		m := scrape(t, client, in)
		if v := m.get(t, "ws2sse_events_in_total", "channel", "ticker"); v != 2 {
			t.Fatalf("ws2sse_events_in_total{ticker} is %v while btc closes, want 2 throughout", v)
		}
		if closedAt.IsZero() && m.get(t, "ws2sse_channels_open", "channel", "ticker") == 1 {
			closedAt = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// channelsDoc is the JSON of /channels, as a page reads it.
type channelsDoc struct {
	Routes []struct {
		Name      string   `json:"name"`
		Path      string   `json:"path"`
		Variables []string `json:"variables"`
	} `json:"routes"`
	Channels []channelDoc `json:"channels"`
}

type channelDoc struct {
	Name               string         `json:"name"`
	Path               string         `json:"path"`
	Lazy               bool           `json:"lazy"`
	State              string         `json:"state"`
	Error              string         `json:"error"`
	Clients            int            `json:"clients"`
	ClientsByTransport map[string]int `json:"clientsByTransport"`
	Events             uint64         `json:"events"`
	LastEventID        string         `json:"lastEventId"`
	LastEventTime      *time.Time     `json:"lastEventTime"`
	EventNames         []string       `json:"eventNames"`
}

// getChannels reads /channels.
func getChannels(t testing.TB, client *http.Client, in *instance) (channelsDoc, string) {
	t.Helper()
	code, body := getBody(t, client, in.url("/channels"))
	if code != http.StatusOK {
		t.Fatalf("GET /channels: status %d", code)
	}
	var doc channelsDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/channels is not JSON: %v\n%s", err, body)
	}
	return doc, body
}

func (d channelsDoc) channel(name string) *channelDoc {
	for i := range d.Channels {
		if d.Channels[i].Name == name {
			return &d.Channels[i]
		}
	}
	return nil
}

// TestChannelsEndpoint: /channels lists the configured routes, templated
// ones with their variables, and every open channel with its state,
// clients, events and last id; a down channel's error never shows the
// feed's credentials.
func TestChannelsEndpoint(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[upstream]
backoff_min = "50ms"
backoff_max = "200ms"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%[1]s/ws/feed"
lazy = false
event_field = "type"

[[channel]]
name = "down"
path = "/down"
url = "ws://feeduser:secret@%[2]s/ws/down?token=secret"
lazy = false

[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z]{1,8}}"
url = "ws://%[1]s/ws/{symbol}"
`, f.host(), closedAddr))
	client := newHTTPClient(t)

	// Before any client: the routes, and the two eager channels.
	doc, _ := getChannels(t, client, in)
	type route struct{ name, path, vars string }
	var routes []route
	for _, r := range doc.Routes {
		routes = append(routes, route{r.Name, r.Path, strings.Join(r.Variables, ",")})
	}
	wantRoutes := []route{{"feed", "/feed", ""}, {"down", "/down", ""}, {"ticker", "/ticker/{symbol:[a-z]{1,8}}", "symbol"}}
	if !slices.Equal(routes, wantRoutes) {
		t.Errorf("/channels routes %+v, want %+v", routes, wantRoutes)
	}
	var names []string
	for _, c := range doc.Channels {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"down", "feed"}) {
		t.Errorf("/channels lists the open channels %q, want [down feed]", names)
	}

	up := f.connTo(t, "/ws/feed")
	s := openSSE(t, client, in.url("/feed"), nil)
	ws := dialWS(t, "ws://"+in.addr+"/feed")
	tick := openSSE(t, client, in.url("/ticker/btc"), nil)
	f.connTo(t, "/ws/btc")
	var lastID string
	for _, msg := range []string{`{"type":"trade","p":1}`, `{"type":"quote","p":2}`, `{"type":"trade","p":3}`} {
		up.send(t, msg)
		ev := s.next(t)
		lastID = ev.ID
		readWS(t, ws)
	}

	var body string
	wstest.Eventually(t, "/channels to show both clients of feed and the down channel", func() bool {
		doc, body = getChannels(t, client, in)
		c, d := doc.channel("feed"), doc.channel("down")
		return c != nil && c.Clients == 2 && c.Events == 3 && d != nil && d.State == "down"
	})
	t.Logf("/channels:\n%s", body)
	if strings.Contains(body, "secret") {
		t.Errorf("/channels shows the feed's credentials:\n%s", body)
	}

	c := doc.channel("feed")
	if c.Path != "/feed" || c.Lazy || c.State != "up" || c.Error != "" {
		t.Errorf("feed: path %q lazy %v state %q error %q, want /feed, eager, up, no error", c.Path, c.Lazy, c.State, c.Error)
	}
	if want := map[string]int{"sse": 1, "websocket": 1}; !maps.Equal(c.ClientsByTransport, want) {
		t.Errorf("feed: clientsByTransport %v, want %v", c.ClientsByTransport, want)
	}
	if c.LastEventID != lastID {
		t.Errorf("feed: lastEventId %q, want %q (the last id the clients got)", c.LastEventID, lastID)
	}
	if c.LastEventTime == nil || time.Since(*c.LastEventTime) > time.Minute || time.Until(*c.LastEventTime) > time.Minute {
		t.Errorf("feed: lastEventTime %v, want about now", c.LastEventTime)
	}
	if !slices.Equal(c.EventNames, []string{"trade", "quote"}) {
		t.Errorf("feed: eventNames %q, want [trade quote]", c.EventNames)
	}

	d := doc.channel("down")
	if d.Error == "" || !strings.Contains(d.Error, "refused") {
		t.Errorf("down: error %q, want why the feed is down (connection refused)", d.Error)
	}
	if d.Clients != 0 || d.Events != 0 || d.LastEventID != "" || d.LastEventTime != nil || d.EventNames == nil || len(d.EventNames) != 0 {
		t.Errorf("down: %+v, want no clients, no events, no id, eventNames []", *d)
	}

	b := doc.channel("ticker/btc")
	if b == nil {
		t.Fatal("/channels does not list the open templated channel ticker/btc")
	}
	if b.Path != "/ticker/btc" || !b.Lazy || b.ClientsByTransport["sse"] != 1 {
		t.Errorf("ticker/btc: path %q lazy %v clients %v, want /ticker/btc, lazy, one SSE client", b.Path, b.Lazy, b.ClientsByTransport)
	}
	tick.close()
}

// accessLine is one access log line.
type accessLine struct {
	Message   string   `json:"message"`
	Channel   string   `json:"channel"`
	Path      string   `json:"path"`
	Transport string   `json:"transport"`
	Remote    string   `json:"remote"`
	Duration  *float64 `json:"duration"`
	Events    *uint64  `json:"events"`
	Bytes     *uint64  `json:"bytes"`
	Reason    string   `json:"reason"`
}

// accessLines returns the log lines that end a client session, or turn a
// client away: the ones that name a transport and a reason.
func accessLines(in *instance) []accessLine {
	var out []accessLine
	for _, l := range in.logs.Lines() {
		var a accessLine
		if json.Unmarshal([]byte(l), &a) == nil && a.Transport != "" && a.Reason != "" {
			out = append(out, a)
		}
	}
	return out
}

// waitAccess waits for the access line of a session that ended for reason
// on transport and returns it; there must be only one.
func waitAccess(t testing.TB, in *instance, transport, reason string) accessLine {
	t.Helper()
	var found []accessLine
	wstest.Eventually(t, "the access line of a "+transport+" session that ended: "+reason, func() bool {
		found = found[:0]
		for _, a := range accessLines(in) {
			if a.Transport == transport && a.Reason == reason {
				found = append(found, a)
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Errorf("%d access lines for a %s session that ended: %s, want 1: %+v", len(found), transport, reason, found)
	}
	return found[0]
}

// checkAccess checks the fields every access line has.
func checkAccess(t testing.TB, a accessLine, channel string, events uint64, minBytes uint64) {
	t.Helper()
	if a.Channel != channel {
		t.Errorf("access line %+v: channel %q, want %q", a, a.Channel, channel)
	}
	host, port, err := net.SplitHostPort(a.Remote)
	if err != nil || host != "127.0.0.1" || port == "" || port == "0" {
		t.Errorf("access line: remote %q, want the client's 127.0.0.1:port", a.Remote)
	}
	if a.Duration == nil || *a.Duration <= 0 {
		t.Errorf("access line: duration %v, want how long the session lasted", a.Duration)
	}
	if a.Events == nil || *a.Events != events {
		t.Errorf("access line: events %v, want %d", a.Events, events)
	}
	if a.Bytes == nil || *a.Bytes < minBytes {
		t.Errorf("access line: bytes %v, want at least %d", a.Bytes, minBytes)
	}
}

// TestAccessLog: every client session ends with one log line that says
// which channel, transport and client, how long, how much, and why it
// ended; the token the client sent is in none of the lines.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	const token = "SECRET123"
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[auth]
tokens = ["%s"]

[downstream]
queue = 4
`, token)+feedChannel(f), "-log-level", "trace")
	client := newHTTPClient(t)
	up := f.conn(t, 1)

	// An SSE client and a WebSocket client read two events and leave.
	s := openSSE(t, client, in.url("/feed?access_token="+token), nil)
	ws := dialWS(t, "ws://"+in.addr+"/feed?access_token="+token)
	var sseBytes uint64
	for _, msg := range []string{"first", "second"} {
		up.send(t, msg)
		ev := s.next(t)
		sseBytes += uint64(len(sse.AppendEvent(nil, ev.ID, ev.Name, []byte(ev.Data))))
		readWS(t, ws)
	}
	s.close()
	a := waitAccess(t, in, "sse", "client left")
	checkAccess(t, a, "feed", 2, sseBytes)
	ws.Close(1000, "bye")
	a = waitAccess(t, in, "websocket", "client left")
	checkAccess(t, a, "feed", 2, uint64(len("first")+len("second")))

	// A client that stops reading is dropped as slow.
	stallClient(t, in, "/feed?access_token="+token, "")
	wstest.Eventually(t, "the stalled client to subscribe", func() bool {
		v, _ := scrape(t, client, in).value("ws2sse_clients", "channel", "feed", "transport", "sse")
		return v == 1
	})
	n := fillUntil(t, up, "the client that does not read was not dropped", func() bool {
		for _, a := range accessLines(in) {
			if a.Reason == "slow" {
				return true
			}
		}
		return false
	})
	a = waitAccess(t, in, "sse", "slow")
	if a.Events != nil {
		checkAccess(t, a, "feed", *a.Events, 1)
	} else {
		t.Errorf("access line of the slow client: no events: %+v", a)
	}

	// Clients still connected at shutdown, once every event sent so far
	// has arrived, so that they get only the next.
	waitMetric(t, client, in, float64(2+n), "ws2sse_events_in_total", "channel", "feed")
	s = openSSE(t, client, in.url("/feed"), http.Header{"Authorization": {"Bearer " + token}})
	ws = dialWS(t, "ws://"+in.addr+"/feed?access_token="+token)
	up.send(t, "last")
	ev := s.next(t)
	if ev.Data != "last" {
		t.Fatalf("the SSE client got %.10q, want last", ev.Data)
	}
	if _, b := readWS(t, ws); string(b) != "last" {
		t.Fatalf("the WebSocket client got %.10q, want last", b)
	}
	// The WebSocket client keeps reading, so that it answers the close.
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	if code := in.stop(t); code != exitOK {
		t.Fatalf("ws2sse exited with %d after shutdown, want 0", code)
	}
	if st := websocket.CloseStatus(<-closed); st != websocket.StatusGoingAway {
		t.Errorf("the WebSocket client was closed with %v at shutdown, want %v", st, websocket.StatusGoingAway)
	}
	checkAccess(t, waitAccess(t, in, "sse", "shutdown"), "feed", 1, uint64(len(sse.AppendEvent(nil, ev.ID, ev.Name, []byte(ev.Data)))))
	checkAccess(t, waitAccess(t, in, "websocket", "shutdown"), "feed", 1, uint64(len("last")))

	for _, l := range in.logs.Lines() {
		if strings.Contains(l, token) {
			t.Errorf("a log line shows the client's token: %s", l)
		}
	}
}

// TestAccessLogOverload: a client turned away for overload is logged like a
// session that ended, with what it asked for (the channel, or its path when
// the channel is not open), its transport, its address and why, and none of
// its query.
func TestAccessLogOverload(t *testing.T) {
	t.Parallel()
	const query = "?access_token=OVERLOAD-7d1e"
	f := newFeed(t)
	in := startConfig(t, `
[server]
shutdown_grace = "3s"
max_clients = 1
`+feedChannel(f))
	client := newHTTPClient(t)
	openSSE(t, client, in.url("/feed"), nil)

	over := openSSE(t, client, in.url("/feed"+query), nil)
	evs, _ := over.end(t)
	if len(evs) != 1 || evs[0].Name != "overload" {
		t.Fatalf("the client over max_clients got %+v, want one overload event", evs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+in.addr+"/feed"+query, nil)
	if err == nil {
		c.CloseNow()
		t.Fatal("a WebSocket client over max_clients was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a WebSocket client over max_clients: %v, want 503", err)
	}

	for _, tr := range []string{"sse", "websocket"} {
		a := waitAccess(t, in, tr, "overload")
		host, _, err := net.SplitHostPort(a.Remote)
		if a.Channel != "feed" && a.Path != "/feed" || err != nil || host != "127.0.0.1" {
			t.Errorf("the overload line of a %s client: %+v, want channel feed (or path /feed) and the client's address", tr, a)
		}
	}
	for _, l := range in.logs.Lines() {
		if strings.Contains(l, "OVERLOAD-7d1e") {
			t.Errorf("a log line shows the query of a client turned away: %s", l)
		}
	}
}

// signJWT returns an HS256 token with the channels claim, valid for a
// while (or expired, with a negative ttl).
func signJWT(t testing.TB, secret string, ttl time.Duration, channels ...string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"channels": channels,
		"exp":      time.Now().Add(ttl).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAuthConfig: [auth] from the configuration file, with a static token
// taken from the environment and JWTs, guards every channel but the public
// ones, over SSE and WebSocket, with the token in a header, a cookie or the
// query.
func TestAuthConfig(t *testing.T) {
	// t.Setenv: not parallel.
	const (
		static = "dash-7f3e19"
		secret = "jwt-secret-41c2"
	)
	t.Setenv("DASH_TOKEN", static)
	f := newFeed(t)
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[auth]
tokens = ["${DASH_TOKEN}"]
jwt_secret = "%[1]s"

[[channel]]
name = "prices"
path = "/prices"
url = "ws://%[2]s/ws/prices"

[[channel]]
name = "orders"
path = "/orders"
url = "ws://%[2]s/ws/orders"

[[channel]]
name = "news"
path = "/news"
url = "ws://%[2]s/ws/news"
public = true

[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z]{1,8}}"
url = "ws://%[2]s/ws/{symbol}"
`, secret, f.host()))
	client := newHTTPClient(t)
	pricesJWT := signJWT(t, secret, time.Hour, "prices")
	tickerJWT := signJWT(t, secret, time.Hour, "ticker/*")

	for _, tt := range []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"public channel, no token", "/news", nil, http.StatusOK},
		{"no token", "/prices", nil, http.StatusUnauthorized},
		{"unknown token", "/prices", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized},
		{"the unexpanded variable", "/prices", http.Header{"Authorization": {"Bearer ${DASH_TOKEN}"}}, http.StatusUnauthorized},
		{"static token, header", "/prices", http.Header{"Authorization": {"Bearer " + static}}, http.StatusOK},
		{"static token, query", "/orders?access_token=" + static, nil, http.StatusOK},
		{"static token, cookie", "/orders", http.Header{"Cookie": {"ws2sse_token=" + static}}, http.StatusOK},
		{"static token, templated", "/ticker/btc", http.Header{"Authorization": {"Bearer " + static}}, http.StatusOK},
		{"JWT for the channel, header", "/prices", http.Header{"Authorization": {"Bearer " + pricesJWT}}, http.StatusOK},
		{"JWT for the channel, query", "/prices?access_token=" + pricesJWT, nil, http.StatusOK},
		{"JWT for the channel, cookie", "/prices", http.Header{"Cookie": {"ws2sse_token=" + pricesJWT}}, http.StatusOK},
		{"JWT for another channel", "/orders", http.Header{"Authorization": {"Bearer " + pricesJWT}}, http.StatusForbidden},
		{"JWT for another channel, query", "/orders?access_token=" + pricesJWT, nil, http.StatusForbidden},
		{"JWT with a pattern", "/ticker/eth", http.Header{"Authorization": {"Bearer " + tickerJWT}}, http.StatusOK},
		{"JWT with a pattern, another channel", "/prices", http.Header{"Authorization": {"Bearer " + tickerJWT}}, http.StatusForbidden},
		{"expired JWT", "/prices", http.Header{"Authorization": {"Bearer " + signJWT(t, secret, -time.Minute, "prices")}}, http.StatusUnauthorized},
		{"JWT signed with another key", "/prices", http.Header{"Authorization": {"Bearer " + signJWT(t, "other", time.Hour, "prices")}}, http.StatusUnauthorized},
	} {
		resp, s := getSSE(t, client, in.url(tt.path), tt.header)
		body := ""
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		s.close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: GET %s: %d %q, want %d", tt.name, tt.path, resp.StatusCode, body, tt.want)
			continue
		}
		switch tt.want {
		case http.StatusUnauthorized:
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without WWW-Authenticate: Bearer", tt.name)
			}
			fallthrough
		case http.StatusForbidden:
			if strings.Count(strings.TrimSuffix(body, "\n"), "\n") != 0 || body == "" {
				t.Errorf("%s: body %q, want a one-line reason", tt.name, body)
			}
			if strings.Contains(body, static) || strings.Contains(body, secret) {
				t.Errorf("%s: the reason shows a token: %q", tt.name, body)
			}
		}
	}

	// WebSocket: the same rules, the token in the query or a header.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, tt := range []struct {
		name   string
		path   string
		header http.Header
		want   int // 0: accepted
	}{
		{"public channel, no token", "/news", nil, 0},
		{"no token", "/prices", nil, http.StatusUnauthorized},
		{"static token, query", "/prices?access_token=" + static, nil, 0},
		{"JWT, header", "/prices", http.Header{"Authorization": {"Bearer " + pricesJWT}}, 0},
		{"JWT for another channel, query", "/orders?access_token=" + pricesJWT, nil, http.StatusForbidden},
	} {
		c, resp, err := websocket.Dial(ctx, "ws://"+in.addr+tt.path, &websocket.DialOptions{HTTPHeader: tt.header})
		if err == nil {
			c.CloseNow()
		}
		switch {
		case tt.want == 0 && err != nil:
			t.Errorf("WebSocket %s: %v, want it accepted", tt.name, err)
		case tt.want != 0 && (err == nil || resp == nil || resp.StatusCode != tt.want):
			t.Errorf("WebSocket %s: accepted or refused with another status (%v), want %d", tt.name, err, tt.want)
		}
	}

	// A client with a token gets the feed's events.
	s := openSSE(t, client, in.url("/prices?access_token="+pricesJWT), nil)
	f.connTo(t, "/ws/prices").send(t, "42")
	if ev := s.next(t); ev.Data != "42" {
		t.Errorf("an authorized client got %q, want 42", ev.Data)
	}
	s.close()

	in.stop(t)
	for _, l := range in.logs.Lines() {
		for _, tok := range []string{static, secret, pricesJWT, tickerJWT} {
			if strings.Contains(l, tok) {
				t.Errorf("a log line shows a token: %s", l)
			}
		}
	}
}

// TestHealthcheckFlag: ws2sse -healthcheck URL exits 0 when URL answers
// 200, and 1 when it answers anything else or nothing.
func TestHealthcheckFlag(t *testing.T) {
	t.Parallel()
	in := startConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[[channel]]
name = "refused"
path = "/refused"
url = "ws://%s/ws"
lazy = false
`, closedAddr))
	// The eager channel's feed refuses every connection: /readyz is 503.
	waitStatus(t, newHTTPClient(t), in.url("/readyz"), http.StatusServiceUnavailable)

	for _, tt := range []struct {
		url     string
		want    int
		wantErr string // in stderr
	}{
		{in.url("/healthz"), exitOK, ""},
		{in.url("/readyz"), exitFailure, "503"},
		{"http://" + closedAddr + "/healthz", exitFailure, "refused"},
	} {
		var stdout, stderr wstest.Buffer
		code := run(context.Background(), []string{"-healthcheck", tt.url}, &stdout, &stderr)
		if code != tt.want {
			t.Errorf("-healthcheck %s: exit %d, want %d (stderr %q)", tt.url, code, tt.want, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("-healthcheck %s: stderr %q, want it to say %q", tt.url, stderr.String(), tt.wantErr)
		}
		if tt.wantErr == "" && stderr.String() != "" {
			t.Errorf("-healthcheck %s: stderr %q, want nothing", tt.url, stderr.String())
		}
		if stdout.String() != "" {
			t.Errorf("-healthcheck %s: stdout %q, want nothing", tt.url, stdout.String())
		}
	}
}
