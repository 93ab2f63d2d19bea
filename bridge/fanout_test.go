package bridge

import (
	"testing"

	"github.com/ws2sse/ws2sse/upstream"
)

// fanOut is a channel with n subscribers whose upstream is connected but
// silent (no pings, no watchdog), so that the test publishes every event
// itself, as the upstream's read loop would.
type fanOut struct {
	c    *Channel
	subs []*Subscription
	buf  []*Event // reused by every Read
}

func newFanOut(tb testing.TB, n int, opts Options) *fanOut {
	tb.Helper()
	f := newFeed(tb)
	opts.Upstream.PingInterval = -1
	opts.Upstream.ReadTimeout = -1
	c := newChannel(tb, f, "/fanout", opts)
	f.next(tb)
	// Fill the ring once so that it has stopped growing.
	frame := upstream.Frame{Data: []byte(`{"type":"tick","p":1}`)}
	for range c.ring.size {
		c.publishFrame(frame)
	}
	fo := &fanOut{c: c, buf: make([]*Event, 0, 16)}
	for range n {
		fo.subs = append(fo.subs, subscribe(tb, c, SubscribeOptions{}))
	}
	return fo
}

// step publishes one frame and has every subscriber read it.
func (fo *fanOut) step(tb testing.TB, f upstream.Frame) {
	fo.c.publishFrame(f)
	for _, s := range fo.subs {
		var err error
		fo.buf, err = s.Read(fo.buf[:0])
		if err != nil || len(fo.buf) != 1 {
			tb.Fatalf("Read = %d events, %v; want 1", len(fo.buf), err)
		}
	}
}

// TestFanOutAllocs: publishing allocates the event and its wire forms once,
// however many subscribers read it; reading allocates nothing.
func TestFanOutAllocs(t *testing.T) {
	// The event, its id, its SSE and JSON bytes, and json.Marshal's two for
	// the JSON string of its name.
	want := 6.0
	slack := 0.0
	if raceEnabled {
		want, slack = 8, 1 // json.Marshal's pooled buffer, sometimes
	}
	frame := upstream.Frame{Data: []byte(`{"type":"tick","p":1}`)}
	measure := func(n int, opts Options) (step, read float64) {
		fo := newFanOut(t, n, opts)
		step = testing.AllocsPerRun(200, func() { fo.step(t, frame) })
		read = testing.AllocsPerRun(200, func() {
			for _, s := range fo.subs {
				fo.buf, _ = s.Read(fo.buf[:0])
			}
		})
		return step, read
	}

	few, _ := measure(10, Options{})
	many, read := measure(1000, Options{})
	t.Logf("allocations per event: %v with 10 subscribers, %v with 1000", few, many)
	if many > few+slack {
		t.Errorf("allocations per event grow with subscribers: %v with 10, %v with 1000", few, many)
	}
	if many > want {
		t.Errorf("%v allocations per event, want at most %v", many, want)
	}
	if read != 0 {
		t.Errorf("1000 subscribers' Reads allocate %v times, want 0", read)
	}

	// Naming events costs a parse per event, still nothing per subscriber.
	named := Options{EventField: "type"}
	few, _ = measure(10, named)
	many, _ = measure(1000, named)
	t.Logf("with EventField: %v allocations per event with 10 subscribers, %v with 1000", few, many)
	if many > few+slack {
		t.Errorf("with EventField, allocations per event grow with subscribers: %v with 10, %v with 1000", few, many)
	}
}

func BenchmarkPublish(b *testing.B) {
	fo := newFanOut(b, 1000, Options{EventField: "type"})
	frame := upstream.Frame{Data: []byte(`{"type":"tick","symbol":"BTC-USD","price":"64123.50","size":"0.015"}`)}
	b.ReportAllocs()
	for b.Loop() {
		fo.step(b, frame)
	}
}

func BenchmarkRead(b *testing.B) {
	const batch = 64
	fo := newFanOut(b, 1, Options{})
	s := fo.subs[0]
	frame := upstream.Frame{Data: []byte(`{"type":"tick","p":1}`)}
	for range batch {
		fo.c.publishFrame(frame)
	}
	head := fo.c.ring.head // no publisher from here on
	b.ReportAllocs()
	for b.Loop() {
		s.next.Store(head - batch)
		var err error
		fo.buf, err = s.Read(fo.buf[:0])
		if err != nil || len(fo.buf) != batch {
			b.Fatalf("Read = %d events, %v", len(fo.buf), err)
		}
	}
}
