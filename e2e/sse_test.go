package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// feedChannel is a configuration with one eager channel "feed" at /feed,
// reading the feed's /ws/feed, with extra lines added to [[channel]].
func feedChannel(f *feed, server, downstream, channel string) string {
	return fmt.Sprintf(`
[server]
%s

[downstream]
%s

[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed"
lazy = false
%s
`, server, downstream, f.host(), channel)
}

// TestEventSourceReceivesEvents: a browser's EventSource gets every frame
// the upstream sends, unnamed and named, with its data exactly as sent:
// line breaks of every kind, unicode, leading spaces, and text that looks
// like SSE fields.
func TestEventSourceReceivesEvents(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", "", `event_field = "type"`))
	up := f.conn(t, "/ws/feed")

	p.recordFeed(s.base, `["message", "trade", "quote"]`)

	frames := []struct {
		send, event, data string
	}{
		{`{"px":101.5}`, "message", `{"px":101.5}`},
		{`{"type":"trade","px":101.5,"qty":3}`, "trade", `{"type":"trade","px":101.5,"qty":3}`},
		{"first line\nsecond line\r\nthird line\rfourth line", "message", "first line\nsecond line\nthird line\nfourth line"},
		{`{"type":"quote","text":"héllo wörld ✓ 日本語 🎉"}`, "quote", `{"type":"quote","text":"héllo wörld ✓ 日本語 🎉"}`},
		{"  two leading spaces", "message", "  two leading spaces"},
		{" one leading space\n  two on the next line\n\tand a tab", "message", " one leading space\n  two on the next line\n\tand a tab"},
		{"a blank line follows\n\nand then this", "message", "a blank line follows\n\nand then this"},
		{"ends with a line break\n", "message", "ends with a line break\n"},
		{"data: not a field\nid: 999\nevent: evil\nretry: 1\n\n: not a comment", "message", "data: not a field\nid: 999\nevent: evil\nretry: 1\n\n: not a comment"},
		{"unicode without JSON: ünïcödé 𝄞", "message", "unicode without JSON: ünïcödé 𝄞"},
	}
	for _, fr := range frames {
		up.send(t, fr.send)
	}
	p.waitFor(fmt.Sprintf("%d events", len(frames)), fmt.Sprintf(`streams.a.events.length >= %d`, len(frames)), `streams.a`, 0)

	got := recorded(p, "a")
	if len(got) != len(frames) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(frames), got)
	}
	var ids []string
	for i, fr := range frames {
		if got[i].Type != fr.event || got[i].Data != fr.data {
			t.Errorf("frame %d %q: the browser got event %q data %q, want event %q data %q", i, fr.send, got[i].Type, got[i].Data, fr.event, fr.data)
		}
		ids = append(ids, got[i].ID)
	}
	checkIDs(t, ids)
}

// checkIDs checks that every id is set and that they increase, as ids of
// the form <unix-ms>-<seq> compare.
func checkIDs(t *testing.T, ids []string) {
	t.Helper()
	for i, id := range ids {
		if id == "" {
			t.Errorf("event %d has no id", i)
			continue
		}
		if i > 0 && !idLess(ids[i-1], id) {
			t.Errorf("ids do not increase: %q then %q", ids[i-1], id)
		}
	}
}

func idLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	an, _ := strconv.ParseUint(am, 10, 64)
	bn, _ := strconv.ParseUint(bm, 10, 64)
	if an != bn {
		return an < bn
	}
	aq, _ := strconv.ParseUint(as, 10, 64)
	bq, _ := strconv.ParseUint(bs, 10, 64)
	return aq < bq
}

// TestEventSourceResumesAfterCut: the connection between the browser and
// ws2sse is cut while the upstream keeps publishing. The browser reconnects
// on its own after the retry ws2sse sent, with Last-Event-ID, and ends up
// with every event exactly once, in order.
func TestEventSourceResumesAfterCut(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", `retry = "200ms"`, `replay = 1000`))
	up := f.conn(t, "/ws/feed")
	r := newRelay(t, s.addr)

	p.recordFeed("http://"+r.addr(), `["message", "gap"]`)

	// The feed publishes 1..300: the first 100 paced, the next 100 at once
	// right after the cut (while the browser waits out its retry), the
	// rest paced again.
	const total = 300
	cut := make(chan struct{})
	var wg sync.WaitGroup
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; n <= total; n++ {
			if n == 101 {
				<-cut
			}
			if err := up.writeErr(websocket.MessageText, []byte(strconv.Itoa(n))); err != nil {
				pubErr = err
				return
			}
			if n <= 100 || n > 200 {
				time.Sleep(3 * time.Millisecond)
			}
		}
	}()
	p.waitFor("40 events before the cut", `streams.a.events.length >= 40`, `streams.a.events.length`, 0)
	r.cut()
	close(cut)
	p.waitFor(fmt.Sprintf("all %d events after the reconnect", total),
		fmt.Sprintf(`streams.a.events.length >= %d`, total), `{opens: streams.a.opens, errors: streams.a.errors, n: streams.a.events.length}`, 0)
	wg.Wait()
	if pubErr != nil {
		t.Fatalf("failed to publish: %v", pubErr)
	}

	got := recorded(p, "a")
	var seqs []string
	var ids []string
	for _, e := range got {
		if e.Type != "message" {
			t.Errorf("unexpected %s event %q", e.Type, e.Data)
			continue
		}
		seqs = append(seqs, e.Data)
		ids = append(ids, e.ID)
	}
	want := make([]string, total)
	for i := range want {
		want[i] = strconv.Itoa(i + 1)
	}
	if !slices.Equal(seqs, want) {
		t.Errorf("the browser got %d events, want 1..%d exactly once in order: %v", len(seqs), total, seqs)
	}
	checkIDs(t, ids)

	st := eval[struct{ Opens, Errors int }](p, `({opens: streams.a.opens, errors: streams.a.errors})`)
	if st.Opens < 2 || st.Errors < 1 {
		t.Errorf("EventSource opened %d times with %d errors, want a reconnect after the cut", st.Opens, st.Errors)
	}
	// The reconnect carried the id of the last event the browser had.
	reqs := r.requests("/feed")
	if len(reqs) < 2 {
		t.Fatalf("the relay saw %d requests for /feed, want 2 or more", len(reqs))
	}
	if h := header(reqs[0], "Last-Event-ID"); h != "" {
		t.Errorf("first request had Last-Event-ID %q, want none", h)
	}
	last := header(reqs[1], "Last-Event-ID")
	if last == "" || !slices.Contains(ids[:len(ids)-1], last) {
		t.Errorf("the reconnect sent Last-Event-ID %q, want the id of an event the browser had:\n%s", last, reqs[1])
	}
	t.Logf("reconnected with Last-Event-ID %s after %d events", last, slices.Index(ids, last)+1)
}

// TestEventSourceGap: a browser that resumes from an id the replay buffer no
// longer holds gets a "gap" event, then the events the buffer has.
func TestEventSourceGap(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", `retry = "200ms"`, `replay = 5`))
	up := f.conn(t, "/ws/feed")
	r := newRelay(t, s.addr)

	p.recordFeed("http://"+r.addr(), `["message", "gap"]`)

	for n := 1; n <= 3; n++ {
		up.send(t, strconv.Itoa(n))
	}
	p.waitFor("3 events", `streams.a.events.length >= 3`, `streams.a.events`, 0)

	// Offline while 17 events go by, more than the 5 the buffer keeps.
	r.block()
	p.waitFor("the EventSource to see the cut", `streams.a.errors >= 1`, `streams.a`, 0)
	for n := 4; n <= 20; n++ {
		up.send(t, strconv.Itoa(n))
	}
	s.waitChannel(t, "feed", "20 events in", func(c channelInfo) bool { return c.Events >= 20 })
	r.unblock()
	p.waitFor("the gap and the buffered events", `streams.a.events.length >= 3 + 1 + 5`, `streams.a`, 0)

	got := recorded(p, "a")
	if len(got) != 9 {
		t.Fatalf("got %d events, want 3, a gap, then the 5 buffered: %+v", len(got), got)
	}
	for i, want := range []string{"1", "2", "3"} {
		if got[i].Type != "message" || got[i].Data != want {
			t.Errorf("event %d: %s %q, want message %q", i, got[i].Type, got[i].Data, want)
		}
	}
	gap := got[3]
	if gap.Type != "gap" {
		t.Fatalf("event 3 is %s %q, want the gap", gap.Type, gap.Data)
	}
	var g struct{ LastEventID, Next string }
	if err := json.Unmarshal([]byte(gap.Data), &g); err != nil {
		t.Fatalf("gap data %q: %v", gap.Data, err)
	}
	if g.LastEventID != got[2].ID {
		t.Errorf("gap lastEventId %q, want the id the browser resumed from, %q", g.LastEventID, got[2].ID)
	}
	if g.Next != got[4].ID {
		t.Errorf("gap next %q, want the id of the event after it, %q", g.Next, got[4].ID)
	}
	for i, want := range []string{"16", "17", "18", "19", "20"} {
		if e := got[4+i]; e.Type != "message" || e.Data != want {
			t.Errorf("after the gap, event %d: %s %q, want message %q", i, e.Type, e.Data, want)
		}
	}
}

// TestOverloadRetry: with server.overload = "retry" and max_clients reached,
// a browser's EventSource is told to come back later: it stays CONNECTING,
// never CLOSED, and opens once a slot is free.
func TestOverloadRetry(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "max_clients = 1\noverload = \"retry\"", "", ""))
	up := f.conn(t, "/ws/feed")

	p.recordFeed(s.base, `["message"]`)
	s.waitChannel(t, "feed", "1 client", func(c channelInfo) bool { return c.Clients == 1 })

	p.run(`record("b", "/feed", ["message", "overload"])`)
	p.waitFor("the second EventSource to be turned away",
		`streams.b.events.some((e) => e.type === "overload") || (streams.b.es.readyState === 1 && performance.now() - streams.b.t0 > 1000)`,
		`streams.b`, 0)
	b := eval[struct {
		Events     []sseEvent
		ReadyState int
	}](p, `({events: streams.b.events, readyState: streams.b.es.readyState})`)
	if !slices.ContainsFunc(b.Events, func(e sseEvent) bool { return e.Type == "overload" }) {
		t.Fatalf("a second EventSource got no overload event while max_clients = 1 was reached (readyState %d, events %+v): "+
			"server.max_clients is not enforced", b.ReadyState, b.Events)
	}
	if c, _ := s.channel(t, "feed"); c.Clients != 1 {
		t.Errorf("%d clients on the channel, want 1 while max_clients = 1", c.Clients)
	}
	// It waits out the long retry in CONNECTING.
	p.waitFor("the turned-away EventSource to be CONNECTING", `streams.b.es.readyState === 0`, `streams.b`, 0)

	// A slot frees: it comes back (after its 5 to 15 s retry) and streams.
	p.run(`streams.a.es.close(); true`)
	p.waitFor("the turned-away EventSource to open again", `streams.b.opens >= 2 && streams.b.es.readyState === 1`,
		`{opens: streams.b.opens, errors: streams.b.errors, seen: streams.b.seen}`, 20*time.Second)
	up.send(t, "after the slot freed")
	p.waitFor("an event on the second EventSource", `streams.b.events.some(e => e.data === "after the slot freed")`, `streams.b.events`, 0)
	if seen := eval[map[string]bool](p, `streams.b.seen`); seen["2"] {
		t.Errorf("the turned-away EventSource was CLOSED at some point (readyState 2): it would not have come back")
	}
}
