package bridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

// testLease is the lease of the cluster tests: short, so that a takeover
// is quick, and long enough for a loaded machine to renew it in time.
const testLease = 600 * time.Millisecond

// newNode returns a channel on path of f as the node named node of store
// sees it, closed at cleanup.
func newNode(t testing.TB, store *MemoryStore, node string, f *feed, path string, opts Options) (*Channel, *MemoryStore) {
	t.Helper()
	s := store.Join(node)
	opts.Store = s
	if opts.Lease == 0 {
		opts.Lease = testLease
	}
	if opts.Name == "" {
		opts.Name = strings.TrimPrefix(path, "/")
	}
	opts.Upstream = upstreamOpts(f, path)
	opts.Logger = wstest.Logger(t).With().Str("test_node", node).Logger()
	c := New(opts)
	t.Cleanup(c.Close)
	return c, s
}

// holderOf returns the channel among cs that holds the upstream, waiting
// until exactly one does.
func holderOf(t testing.TB, cs ...*Channel) *Channel {
	t.Helper()
	var h *Channel
	wstest.Eventually(t, "exactly one node to hold the upstream", func() bool {
		h = nil
		n := 0
		for _, c := range cs {
			if c.Info().Holder {
				h = c
				n++
			}
		}
		return n == 1
	})
	return h
}

// waitUp waits until c reports its upstream up.
func waitUp(t testing.TB, c *Channel) {
	t.Helper()
	wstest.Eventually(t, c.Name()+" to see its upstream up", func() bool { return c.Info().State.State == upstream.StateUp })
}

// readEvents reads from s until it has n events that are not notices, and
// returns every event read, notices included.
func readEvents(t testing.TB, s *Subscription, n int) []*Event {
	t.Helper()
	var got []*Event
	count := func() int {
		k := 0
		for _, e := range got {
			if !e.Notice() {
				k++
			}
		}
		return k
	}
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		var err error
		if got, err = s.Read(got); err != nil {
			t.Fatalf("Read after %d events: %v", len(got), err)
		}
		if k := count(); k > n {
			t.Fatalf("read %d events, want %d: %q", k, n, datas(got))
		} else if k == n {
			return got
		}
		select {
		case <-s.Wake():
		case <-s.Done():
		case <-timeout.C:
			t.Fatalf("read %q, want %d events", datas(got), n)
		}
	}
}

// withoutNotices returns the events that are not notices.
func withoutNotices(evs []*Event) []*Event {
	var out []*Event
	for _, e := range evs {
		if !e.Notice() {
			out = append(out, e)
		}
	}
	return out
}

func TestClusterOneUpstreamSameEvents(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	var nodes []*Channel
	for _, n := range []string{"a", "b", "c"} {
		c, _ := newNode(t, store, n, f, "/one", Options{EventField: "type"})
		nodes = append(nodes, c)
	}
	fc := f.next(t)
	h := holderOf(t, nodes...)
	for _, c := range nodes {
		waitUp(t, c)
	}
	var subs []*Subscription
	for _, c := range nodes {
		subs = append(subs, subscribe(t, c, SubscribeOptions{}))
	}
	fc.send(t, `{"type":"trade","n":1}`)
	fc.sendFrame(t, feedFrame{binary: true, data: []byte{0, 1, 2}})
	fc.send(t, `{"n":3}`)
	var want []*Event
	for i, s := range subs {
		got := readN(t, s, 3)
		if i == 0 {
			want = got
			continue
		}
		for j := range got {
			if got[j].ID != want[j].ID || got[j].Name != want[j].Name || string(got[j].Data) != string(want[j].Data) ||
				got[j].Binary != want[j].Binary || string(got[j].SSE) != string(want[j].SSE) {
				t.Errorf("node %d event %d = %s %s %q, node 0 has %s %s %q", i, j, got[j].ID, got[j].Name, got[j].Data, want[j].ID, want[j].Name, want[j].Data)
			}
		}
	}
	if want[0].Name != "trade" || !want[1].Binary || want[2].Name != "message" {
		t.Errorf("events %+v", want)
	}
	checkIncreasing(t, ids(want))
	if n := f.accepted("/one"); n != 1 {
		t.Errorf("%d upstream connections, want 1 (holder %s)", n, h.Name())
	}
	for _, c := range nodes {
		if inf := c.Info(); inf.EventsIn != 3 || inf.LastEventID != want[2].ID {
			t.Errorf("Info = %+v", inf)
		}
	}
}

func checkIncreasing(t testing.TB, ids []string) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		a, _ := parseKey(ids[i-1])
		b, ok := parseKey(ids[i])
		if !ok || !a.less(b) {
			t.Errorf("ids do not increase: %q", ids)
			return
		}
	}
}

func TestClusterResumeOnAnotherNode(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, _ := newNode(t, store, "a", f, "/resume", Options{})
	fc := f.next(t)
	waitUp(t, a)
	sa := subscribe(t, a, SubscribeOptions{})
	for _, fr := range frames(0, 5) {
		fc.send(t, fr)
	}
	got := readN(t, sa, 5)
	sa.Close()

	// A node that starts now loads the log: the resume is exact.
	b, _ := newNode(t, store, "b", f, "/resume", Options{})
	sb := subscribe(t, b, SubscribeOptions{LastEventID: got[2].ID})
	if _, gap := sb.Gap(); gap {
		t.Fatal("resume on another node reported a gap")
	}
	rest := readN(t, sb, 2)
	if !slices.Equal(ids(rest), ids(got[3:])) {
		t.Errorf("resumed with %q, want %q", ids(rest), ids(got[3:]))
	}
	fc.send(t, `{"n":5}`)
	live := readN(t, sb, 1)
	checkIncreasing(t, append(ids(got), ids(live)...))

	// An id the log never had is a gap, as in one process.
	sg := subscribe(t, b, SubscribeOptions{LastEventID: "1-0"})
	if id, gap := sg.Gap(); !gap || id != "1-0" {
		t.Errorf("Gap() = %q, %v; want 1-0, true", id, gap)
	}
	if n := f.accepted("/resume"); n != 1 {
		t.Errorf("%d upstream connections, want 1", n)
	}
}

func TestClusterTakeover(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, sa := newNode(t, store, "a", f, "/takeover", Options{StatusEvents: true})
	fc := f.next(t)
	waitUp(t, a)
	b, _ := newNode(t, store, "b", f, "/takeover", Options{StatusEvents: true})
	waitUp(t, b)
	if holderOf(t, a, b) != a {
		t.Fatal("the first node does not hold the upstream")
	}
	sub := subscribe(t, b, SubscribeOptions{})
	fc.send(t, `{"n":1}`)
	before := readN(t, sub, 1)

	// The holder is cut off from the store: it cannot renew its lease,
	// drops the upstream when the lease runs out, and b takes over.
	start := time.Now()
	sa.Fail(errors.New("store unreachable"))
	fc.waitGone(t)
	fc2 := f.next(t)
	took := time.Since(start)
	// Within the lease; the margin is for a loaded machine.
	if took > testLease+time.Second {
		t.Errorf("takeover took %s, lease %s", took, testLease)
	}
	if holderOf(t, a, b) != b {
		t.Fatal("b does not hold the upstream")
	}
	fc2.send(t, `{"n":2}`)
	after := readEvents(t, sub, 1)
	if sub.Err() != nil {
		t.Fatalf("the subscription on b ended: %v", sub.Err())
	}
	last := after[len(after)-1]
	if string(last.Data) != `{"n":2}` {
		t.Errorf("after the takeover: %q", datas(after))
	}
	checkIncreasing(t, []string{before[0].ID, last.ID})
	// b's subscriber saw the new holder come up.
	if !slices.ContainsFunc(after, func(e *Event) bool { return e.Notice() && strings.Contains(string(e.Data), `"up"`) }) {
		t.Errorf("no up notice after the takeover: %q", datas(after))
	}
	if inf := b.Info(); inf.Reconnects != 1 {
		t.Errorf("b counts %d reconnects, want 1", inf.Reconnects)
	}

	// Back in touch, a catches up and does not take the upstream back.
	sa.Fail(nil)
	sa2 := subscribe(t, a, SubscribeOptions{LastEventID: before[0].ID})
	got := withoutNotices(readEvents(t, sa2, 1))
	if got[0].ID != last.ID {
		t.Errorf("a resumed with %s, want %s", got[0].ID, last.ID)
	}
	if holderOf(t, a, b) != b || f.accepted("/takeover") != 2 {
		t.Errorf("holder changed again; %d connections", f.accepted("/takeover"))
	}
}

func TestClusterGracefulHandover(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, _ := newNode(t, store, "a", f, "/handover", Options{Lease: time.Minute})
	fc := f.next(t)
	waitUp(t, a)
	b, _ := newNode(t, store, "b", f, "/handover", Options{Lease: time.Second})
	waitUp(t, b)
	// a's lease lasts a minute, but Close releases it: b takes over
	// within its own renewal period, not a's lease.
	a.Close()
	fc.waitGone(t)
	start := time.Now()
	f.next(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("handover took %s", took)
	}
	holderOf(t, b)
}

func TestClusterLazy(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	const linger = 200 * time.Millisecond
	// The lease also bounds how long a node's presence lasts unrefreshed:
	// it must be long enough for a loaded machine.
	opts := Options{Lazy: true, Linger: linger, Lease: time.Second}
	a, _ := newNode(t, store, "a", f, "/lazy", opts)
	b, _ := newNode(t, store, "b", f, "/lazy", opts)
	time.Sleep(2 * linger) // nothing to wait for: no subscriber, no upstream
	if n := f.accepted("/lazy"); n != 0 {
		t.Fatalf("%d upstream connections with no subscriber", n)
	}

	sa := subscribe(t, a, SubscribeOptions{})
	fc := f.next(t)
	holderOf(t, a, b)
	sb := subscribe(t, b, SubscribeOptions{})
	fc.send(t, `{"n":1}`)
	ea, eb := readN(t, sa, 1), readN(t, sb, 1)
	if ea[0].ID != eb[0].ID {
		t.Errorf("ids %s and %s", ea[0].ID, eb[0].ID)
	}

	// a, the holder, loses its subscriber; b still has one: the upstream
	// stays.
	sa.Close()
	time.Sleep(3 * linger)
	fc.send(t, `{"n":2}`)
	readN(t, sb, 1)
	if n := f.accepted("/lazy"); n != 1 || !a.Info().Holder {
		t.Fatalf("%d connections, a holds: %v", n, a.Info().Holder)
	}

	// The last subscriber anywhere leaves: the upstream closes after the
	// linger, and both nodes stop.
	left := time.Now()
	sb.Close()
	fc.waitGone(t)
	if took := time.Since(left); took < linger {
		t.Errorf("upstream closed %s after the last client left, before the linger (%s)", took, linger)
	}
	wstest.Eventually(t, "both nodes to stop following the log", func() bool { return !a.running() && !b.running() })
	if n := f.accepted("/lazy"); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}

	// A subscriber on b resumes from a's ids: b loads the log again.
	sb2 := subscribe(t, b, SubscribeOptions{LastEventID: ea[0].ID})
	if _, gap := sb2.Gap(); gap {
		t.Error("gap on resume after the nodes stopped")
	}
	f.next(t)
	got := readN(t, sb2, 1)
	if string(got[0].Data) != `{"n":2}` {
		t.Errorf("resumed with %q", datas(got))
	}
}

func TestClusterGroupedChannelsGoIdle(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	hubs := []*Hub{NewHub(), NewHub()}
	var chans []*Channel
	for i, h := range hubs {
		t.Cleanup(h.Close)
		c, err := h.OpenInGroup("g", 10, Options{
			Name: "g/x", Upstream: upstreamOpts(f, "/g/x"), Linger: 50 * time.Millisecond,
			Store: store.Join(fmt.Sprint(i)), Lease: time.Second, Logger: wstest.Logger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, c)
	}
	s := subscribe(t, chans[0], SubscribeOptions{})
	fc := f.next(t)
	fc.send(t, "x")
	readN(t, s, 1)
	s.Close()
	fc.waitGone(t)
	wstest.Eventually(t, "the grouped channels to close", func() bool { return hubs[0].Get("g/x") == nil && hubs[1].Get("g/x") == nil })
}

func TestClusterStoreUnreachable(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, _ := newNode(t, store, "a", f, "/down", Options{})
	fc := f.next(t)
	waitUp(t, a)
	b, sb := newNode(t, store, "b", f, "/down", Options{})
	sub := subscribe(t, b, SubscribeOptions{})
	fc.send(t, `{"n":0}`)
	readN(t, sub, 1)

	// b is cut off: its subscriber stays, and catches up from the last id
	// b read once it is back.
	sb.Fail(errors.New("connection refused"))
	for _, fr := range frames(1, 3) {
		fc.send(t, fr)
	}
	time.Sleep(100 * time.Millisecond)
	readNone(t, sub)
	sb.Fail(nil)
	got := readN(t, sub, 3)
	if !slices.Equal(datas(got), frames(1, 3)) {
		t.Errorf("after the outage: %q", datas(got))
	}
	if sub.Err() != nil {
		t.Errorf("subscription ended: %v", sub.Err())
	}
}

// TestClusterCatchUpKeepsSubscribers: records read from the shared log in
// one batch do not count against a subscriber's queue. With a queue of 4, a
// node that catches up on 20 records keeps its subscriber, which gets every
// one of them.
func TestClusterCatchUpKeepsSubscribers(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, _ := newNode(t, store, "a", f, "/burst", Options{})
	fc := f.next(t)
	waitUp(t, a)
	b, sb := newNode(t, store, "b", f, "/burst", Options{Queue: 4})
	onA := subscribe(t, a, SubscribeOptions{})
	sub := subscribe(t, b, SubscribeOptions{})
	fc.send(t, frames(0, 1)[0])
	readN(t, onA, 1)
	readN(t, sub, 1)

	sb.Fail(errors.New("connection refused"))
	for _, fr := range frames(1, 20) {
		fc.send(t, fr)
	}
	readN(t, onA, 20) // all in the shared log
	sb.Fail(nil)
	if got := readN(t, sub, 20); !slices.Equal(datas(got), frames(1, 20)) {
		t.Errorf("after catching up: %q", datas(got))
	}
	if err := sub.Err(); err != nil {
		t.Errorf("subscription ended: %v", err)
	}
}

func TestClusterTrimmedWhileUnreachable(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, _ := newNode(t, store, "a", f, "/trim", Options{Replay: 5})
	fc := f.next(t)
	waitUp(t, a)
	b, sb := newNode(t, store, "b", f, "/trim", Options{Replay: 5})
	sub := subscribe(t, b, SubscribeOptions{})
	fc.send(t, `{"n":0}`)
	first := readN(t, sub, 1)

	// More records than the log keeps (minLogLen) go by while b is cut
	// off: b cannot catch up, so its subscribers are ended and resume
	// with a gap.
	sb.Fail(errors.New("connection refused"))
	w := subscribe(t, a, SubscribeOptions{LastEventID: first[0].ID})
	for i := 1; i <= minLogLen+10; i += 10 {
		for _, fr := range frames(i, 10) {
			fc.send(t, fr)
		}
		readN(t, w, 10) // a keeps up
	}
	sb.Fail(nil)
	select {
	case <-sub.Done():
	case <-time.After(waitFor):
		t.Fatal("the subscription was not ended")
	}
	if !errors.Is(sub.Err(), ErrLost) {
		t.Errorf("ended with %v, want ErrLost", sub.Err())
	}
	again := subscribe(t, b, SubscribeOptions{LastEventID: first[0].ID})
	if _, gap := again.Gap(); !gap {
		t.Error("no gap on resume after lost records")
	}
	got := readN(t, again, 5)
	if string(got[4].Data) != fmt.Sprintf(`{"n":%d}`, minLogLen+10) || w.Err() != nil {
		t.Errorf("replay after the gap: %q", datas(got))
	}
}

func TestClusterStatusEventsTravel(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	opts := Options{StatusEvents: true}
	a, _ := newNode(t, store, "a", f, "/status", opts)
	fc := f.next(t)
	waitUp(t, a)
	b, _ := newNode(t, store, "b", f, "/status", opts)
	waitUp(t, b)
	sub := subscribe(t, b, SubscribeOptions{})
	close(fc.hangup)
	fc.waitGone(t)
	// The upstream comes back within milliseconds: both notices are read
	// together.
	f.next(t)
	got := readN(t, sub, 2)
	if !got[0].Notice() || !strings.Contains(string(got[0].Data), `"state":"down"`) ||
		!strings.Contains(string(got[0].Data), `"error"`) || got[0].ID != "" {
		t.Fatalf("got %+v, want a down notice with its error", got[0])
	}
	if !got[1].Notice() || string(got[1].Data) != `{"state":"up"}` {
		t.Errorf("got %q, want the up notice", got[1].Data)
	}
	wstest.Eventually(t, "b to see the upstream up again", func() bool { return b.Info().State.State == upstream.StateUp })
}

func TestMemoryStoreLease(t *testing.T) {
	ctx := t.Context()
	m := NewMemoryStore("a")
	l := m.Log("c", LogOptions{MaxLen: 3})
	if ok, _, err := l.Acquire(ctx, "a/1", time.Minute); !ok || err != nil {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if ok, left, _ := l.Acquire(ctx, "b/1", time.Minute); ok || left <= 0 {
		t.Errorf("second Acquire = %v, %s", ok, left)
	}
	if ok, _ := l.Renew(ctx, "b/1", time.Minute); ok {
		t.Error("another value renewed the lease")
	}
	if ok, _ := l.Append(ctx, "b/1", 1, []Record{{Data: []byte("x")}}); ok {
		t.Error("another value appended")
	}
	for i := range uint64(5) {
		if ok, err := l.Append(ctx, "a/1", i+1, []Record{{Data: fmt.Appendf(nil, "%d", i)}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if ok, _ := l.Append(ctx, "a/1", 5, []Record{{Data: []byte("again")}}); !ok {
		t.Error("a repeated batch was refused")
	}
	recs, _, _ := l.Last(ctx, 10)
	if got := datasOf(recs); !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Errorf("Last = %q", got)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Prev != recs[i-1].ID {
			t.Errorf("record %d: Prev %q, want %q", i, recs[i].Prev, recs[i-1].ID)
		}
	}
	if recs[0].Prev == "" {
		t.Error("the oldest record kept has no Prev")
	}
	_ = l.Release(ctx, "a/1")
	if ok, _, _ := l.Acquire(ctx, "b/1", time.Minute); !ok {
		t.Error("the released lease was not taken")
	}

	// A lease taken again with the same value numbers its batches anew:
	// its first batch is not taken for a retry of the last one before.
	_ = l.Release(ctx, "b/1")
	for _, data := range []string{"before", "after"} {
		if ok, _, _ := l.Acquire(ctx, "b/1", time.Minute); !ok {
			t.Fatal("the released lease was not taken again")
		}
		if ok, err := l.Append(ctx, "b/1", 1, []Record{{Data: []byte(data)}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		_ = l.Release(ctx, "b/1")
	}
	recs, _, _ = l.Last(ctx, 2)
	if got := datasOf(recs); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("Last = %q, want the first batch of each time the lease was taken", got)
	}
}

func datasOf(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

func TestClusterHolderBlipLosesNothing(t *testing.T) {
	f := newFeed(t)
	store := NewMemoryStore("")
	a, sa := newNode(t, store, "a", f, "/blip", Options{Lease: 2 * time.Second})
	fc := f.next(t)
	waitUp(t, a)
	b, _ := newNode(t, store, "b", f, "/blip", Options{Lease: 2 * time.Second})
	sub := subscribe(t, b, SubscribeOptions{})

	// The holder loses the store for less than its lease: it keeps the
	// upstream, queues what arrives, and appends it once the store is back.
	sa.Fail(errors.New("connection reset"))
	for _, fr := range frames(0, 5) {
		fc.send(t, fr)
	}
	time.Sleep(300 * time.Millisecond) // a few failed appends
	readNone(t, sub)
	sa.Fail(nil)
	got := readN(t, sub, 5)
	if !slices.Equal(datas(got), frames(0, 5)) {
		t.Errorf("after the blip: %q", datas(got))
	}
	checkIncreasing(t, ids(got))
	if !a.Info().Holder || f.accepted("/blip") != 1 {
		t.Errorf("the holder changed: a holds %v, %d connections", a.Info().Holder, f.accepted("/blip"))
	}
}
