package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/redisstore/redistest"
	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
)

// clusterLease is the lease of the cluster tests: a dead holder is replaced
// within about this long.
const clusterLease = 2 * time.Second

// startNodes starts n ws2sse processes sharing srv and serving channels
// (TOML). It skips the test, or fails it in CI, when ws2sse does not run
// the [cluster] section.
func startNodes(t *testing.T, srv *redistest.Server, channels string, n int) []*process {
	t.Helper()
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano())
	var ps []*process
	for i := range n {
		file := writeConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "3s"

[downstream]
heartbeat = "1s"

[cluster]
redis = "%s"
node = "node%d"
lease = "%s"
prefix = "%s"
%s`, srv.URL(), i+1, clusterLease, prefix, channels))
		p := startProcess(t, "-config", file, "-listen", "127.0.0.1:0")
		if !p.logs.Contains("cluster mode") {
			msg := "ws2sse ignores [cluster]: serve.go does not call startCluster (see cmd/ws2sse/cluster.go)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		ps = append(ps, p)
	}
	return ps
}

// readyzOf returns the status and body of /readyz.
func readyzOf(t testing.TB, client *http.Client, p *process) (int, string) {
	t.Helper()
	resp, err := client.Get("http://" + p.addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitReady(t testing.TB, client *http.Client, ps ...*process) {
	t.Helper()
	for _, p := range ps {
		wstest.Eventually(t, p.addr+"/readyz to answer 200", func() bool {
			code, _ := readyzOf(t, client, p)
			return code == http.StatusOK
		})
	}
}

// holder returns the one process that holds the upstream lease.
func holder(t testing.TB, ps ...*process) *process {
	t.Helper()
	var h *process
	for _, p := range ps {
		if logged(p, "took the upstream lease") {
			if h != nil {
				t.Fatal("two processes took the upstream lease")
			}
			h = p
		}
	}
	if h == nil {
		t.Fatal("no process took the upstream lease")
	}
	return h
}

// readEvents reads n events from s; none may be a gap notice.
func readEvents(t testing.TB, s *sseStream, n int) []sse.Event {
	t.Helper()
	out := make([]sse.Event, 0, n)
	for range n {
		ev := s.next(t)
		if ev.Name == "gap" {
			t.Fatalf("gap notice %s after %d events", ev.Data, len(out))
		}
		out = append(out, ev)
	}
	return out
}

func eventIDs(evs []sse.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// TestCluster runs three ws2sse processes on one Redis and one feed: one
// upstream connection, the same events everywhere, resume on another
// process, and takeover when the holder is killed.
func TestCluster(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	f := newFeed(t)
	ps := startNodes(t, srv, feedChannel(f, `event_field = "type"`), 3)
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	waitReady(t, client, ps...)
	if n := f.open(); n != 1 || f.count() != 1 {
		t.Fatalf("%d upstream connections open (%d made), want exactly 1", n, f.count())
	}

	// The same events, with the same ids, in the same order, on every
	// process.
	var streams []*sseStream
	for _, p := range ps {
		streams = append(streams, openSSE(t, client, "http://"+p.addr+"/feed", nil))
	}
	frames := []string{`{"type":"trade","px":1}`, `{"px":2}`, `{"type":"quote","px":3}`, "line1\nline2"}
	for _, fr := range frames {
		up.send(t, fr)
	}
	up.sendBinary(t, []byte{0, 1, 2, 3})
	var first []sse.Event
	for i, s := range streams {
		got := readEvents(t, s, len(frames)+1)
		if i == 0 {
			first = got
			checkIDsIncrease(t, eventIDs(got)...)
			continue
		}
		for j := range got {
			if got[j] != first[j] {
				t.Errorf("process %d event %d = %+v, process 1 has %+v", i+1, j, got[j], first[j])
			}
		}
	}
	if first[0].Name != "trade" || first[1].Name != "message" || first[3].Data != "line1\nline2" || first[4].Data != "AAECAw==" {
		t.Errorf("events %+v", first)
	}

	// A client reads from one process, leaves, and resumes on another
	// with its last id: exactly what it missed, no gap, no duplicate.
	streams[0].close()
	missed := []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}
	for _, fr := range missed {
		up.send(t, fr)
	}
	for _, s := range streams[1:] {
		readEvents(t, s, len(missed))
	}
	last := first[len(first)-1].ID
	resumed := openSSE(t, client, "http://"+ps[1].addr+"/feed", http.Header{"Last-Event-Id": {last}})
	got := readEvents(t, resumed, len(missed))
	for i, ev := range got {
		if ev.Data != missed[i] {
			t.Errorf("resumed event %d: %q, want %q", i, ev.Data, missed[i])
		}
	}
	checkIDsIncrease(t, append([]string{last}, eventIDs(got)...)...)
	up.send(t, `{"n":4}`)
	live := resumed.next(t)
	if live.Data != `{"n":4}` {
		t.Errorf("live after the resume: %q", live.Data)
	}
	before := live.ID

	// The holder is killed: another process opens the upstream within
	// the lease; clients of the others keep their streams, and ids keep
	// increasing.
	h := holder(t, ps...)
	var survivors []*process
	var open []*sseStream
	for _, p := range ps {
		if p != h {
			survivors = append(survivors, p)
			open = append(open, openSSE(t, client, "http://"+p.addr+"/feed", http.Header{"Last-Event-Id": {before}}))
		}
	}
	killed := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h.exited
	up.waitClosed(t)
	up2 := f.conn(t, 2)
	took := time.Since(killed)
	t.Logf("upstream taken over %s after the holder was killed", took)
	if took > clusterLease+1500*time.Millisecond {
		t.Errorf("takeover took %s, lease %s", took, clusterLease)
	}
	wstest.Eventually(t, "a single open upstream connection", func() bool { return f.open() == 1 })
	after := []string{`{"n":5}`, `{"n":6}`}
	waitReady(t, client, survivors...)
	for _, fr := range after {
		up2.send(t, fr)
	}
	for i, s := range open {
		got := readEvents(t, s, len(after))
		for j, ev := range got {
			if ev.Data != after[j] {
				t.Errorf("survivor %d event %d: %q, want %q", i, j, ev.Data, after[j])
			}
		}
		checkIDsIncrease(t, append([]string{before}, eventIDs(got)...)...)
	}
	if n := f.count(); n != 2 {
		t.Errorf("%d upstream connections made, want 2", n)
	}

	// The new holder shuts down gracefully: it releases the lease, so the
	// last process takes over at once rather than after the lease.
	h = survivors[0]
	if !logged(h, "took the upstream lease") {
		h = survivors[1]
	}
	stopped := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	up3 := f.conn(t, 3)
	if took := time.Since(stopped); took >= clusterLease {
		t.Errorf("handover after a graceful shutdown took %s, not less than the lease", took)
	}
	<-h.exited
	if code := h.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if !h.logs.Contains("upstream lease released") {
		t.Error("the holder did not log releasing its lease")
	}
	last3 := survivors[0]
	if last3 == h {
		last3 = survivors[1]
	}
	s := openSSE(t, client, "http://"+last3.addr+"/feed", nil)
	up3.send(t, `{"n":7}`)
	if ev := s.next(t); ev.Data != `{"n":7}` {
		t.Errorf("after the handover: %+v", ev)
	}
}

// TestClusterShutdownCutOffReleasesLease: a holder whose shutdown is cut
// off at the end of its grace (a WebSocket client that never answers the
// close, an upstream that never answers it either) still releases its
// lease, so another process takes the upstream over at its next try (a
// third of the lease) instead of when the lease runs out.
func TestClusterShutdownCutOffReleasesLease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	d := newDeafFeed(t)
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano())
	start := func(node string) *process {
		file := writeConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "2s"

[cluster]
redis = "%s"
node = "%s"
lease = "20s"
prefix = "%s"

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed"
lazy = false
`, srv.URL(), node, prefix, d.srv.Listener.Addr()))
		return startProcess(t, "-config", file, "-listen", "127.0.0.1:0")
	}
	first := start("node1")
	wstest.Eventually(t, "node1 to take the lease", func() bool { return logged(first, "took the upstream lease") })
	second := start("node2")
	deaf := dialWS(t, "ws://"+first.addr+"/feed")
	d.send(t, "/ws/feed", "hello")
	if _, b := readWS(t, deaf); string(b) != "hello" {
		t.Fatalf("got %q, want hello", b)
	}

	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	if !logged(first, "closing remaining connections") {
		t.Error("the shutdown was not cut off: the test no longer tests what it says")
	}
	// node2 tries every third of the lease, about 7 s: within the wait.
	// Had the lease been left to run out, it would have taken 13 to 20 s.
	wstest.Eventually(t, "node2 to take the lease", func() bool { return logged(second, "took the upstream lease") })
}

// TestClusterRedisRestart: Redis dies and comes back empty on the same port.
// The processes keep their clients, /readyz says why it is 503 meanwhile,
// and the streams continue afterwards.
func TestClusterRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	f := newFeed(t)
	ps := startNodes(t, srv, feedChannel(f, `event_field = "type"`), 2)
	client := newHTTPClient(t)
	up := f.conn(t, 1)
	waitReady(t, client, ps...)
	var streams []*sseStream
	for _, p := range ps {
		streams = append(streams, openSSE(t, client, "http://"+p.addr+"/feed", nil))
	}
	up.send(t, `{"n":1}`)
	var ids []string
	for _, s := range streams {
		ids = append(ids, s.next(t).ID)
	}

	srv.Kill()
	for _, p := range ps {
		wstest.Eventually(t, p.addr+"/readyz to answer 503 naming redis", func() bool {
			code, body := readyzOf(t, client, p)
			return code == http.StatusServiceUnavailable && strings.Contains(body, "redis") && strings.Contains(body, "unreachable")
		})
	}
	// The holder gives the upstream up once its lease has run out.
	up.waitClosed(t)

	srv.Restart()
	waitReady(t, client, ps...)
	up2 := f.connTo(t, "/ws/feed")
	up2.send(t, `{"n":2}`)
	for i, s := range streams {
		ev := s.next(t)
		if ev.Data != `{"n":2}` || ev.Name == "gap" {
			t.Errorf("process %d after the restart: %+v", i+1, ev)
		}
		checkIDsIncrease(t, ids[i], ev.ID)
	}
	for _, p := range ps {
		select {
		case <-p.exited:
			t.Errorf("process %s exited: %v", p.addr, p.err)
		default:
		}
	}
}

// TestClusterTemplatedLazy: a templated, lazy channel opened on two
// processes has one upstream connection, held while either has a client,
// and closed once the last client anywhere has left.
func TestClusterTemplatedLazy(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	f := newFeed(t)
	ps := startNodes(t, srv, fmt.Sprintf(`
[[channel]]
name = "ticker"
path = "/ticker/{symbol:[a-z:{}]{1,12}}"
url = "ws://%s/ws/{symbol}"
linger = "0s"
`, f.host()), 2)
	client := newHTTPClient(t)
	if n := f.count(); n != 0 {
		t.Fatalf("%d upstream connections before any client", n)
	}
	// A value with characters that mean something in Redis keys.
	path := "/ticker/a:{b}"
	sa := openSSE(t, client, "http://"+ps[0].addr+path, nil)
	up := f.conn(t, 1)
	sb := openSSE(t, client, "http://"+ps[1].addr+path, nil)
	up.send(t, "hello")
	ea, eb := sa.next(t), sb.next(t)
	if ea != eb || ea.Data != "hello" {
		t.Errorf("events %+v and %+v", ea, eb)
	}
	// Another value is another channel, with its own upstream.
	other := openSSE(t, client, "http://"+ps[1].addr+"/ticker/b", nil)
	upB := f.connTo(t, "/ws/b")
	upB.send(t, "b")
	if ev := other.next(t); ev.Data != "b" {
		t.Errorf("other channel: %+v", ev)
	}
	other.close()
	upB.waitClosed(t)

	// The holder's client leaves; the other process still has one: the
	// upstream stays.
	hs, rs := sa, sb
	if !logged(ps[0], `"channel":"ticker/a:{b}"`, "took the upstream lease") {
		hs, rs = sb, sa
	}
	hs.close()
	up.send(t, "still")
	if ev := rs.next(t); ev.Data != "still" {
		t.Errorf("after the holder's client left: %+v", ev)
	}
	if up.isClosed() {
		t.Fatal("the upstream closed while a process still had a client")
	}
	// The last client leaves: the upstream closes.
	rs.close()
	up.waitClosed(t)
	if n := f.count(); n != 2 {
		t.Errorf("%d upstream connections, want 2", n)
	}
	wstest.Eventually(t, "the released channels to close on both processes", func() bool {
		for _, p := range ps {
			resp, err := client.Get("http://" + p.addr + "/channels")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"name": "ticker/`) {
				return false
			}
		}
		return true
	})
}

// logged reports whether one of p's log lines holds every one of substrs.
func logged(p *process, substrs ...string) bool {
	for _, l := range p.logs.Lines() {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(l, s)
		}
		if all {
			return true
		}
	}
	return false
}
