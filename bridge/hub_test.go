package bridge

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

func TestHub(t *testing.T) {
	f := newFeed(t)
	h := NewHub()
	t.Cleanup(h.Close)
	opts := func(name string) Options {
		// Only t/a goes idle during the test; the others are never
		// subscribed to for a while and would otherwise close too. t/a is
		// not subscribed to at first either: its linger outlasts the
		// steps before its subscriber on a loaded machine.
		linger := time.Minute
		if name == "t/a" {
			linger = 300 * time.Millisecond
		}
		return Options{
			Name:     name,
			Upstream: upstreamOpts(f, "/"+name),
			Linger:   linger,
			Logger:   wstest.Logger(t),
		}
	}

	static, err := h.Open(opts("static"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := h.Open(opts("static")); err != nil || again != static {
		t.Fatalf("Open of an open channel = %p, %v; want %p", again, err, static)
	}
	if fc := f.next(t); fc.path != "/static" {
		t.Fatalf("connection on %s", fc.path)
	}

	const limit = 2
	a, err := h.OpenInGroup("t", limit, opts("t/a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.OpenInGroup("t", limit, opts("t/b"))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Lazy() || !b.Lazy() {
		t.Error("grouped channels are not lazy")
	}
	if _, err := h.OpenInGroup("t", limit, opts("t/c")); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("third channel of a group of %d: %v, want ErrTooManyChannels", limit, err)
	}
	if again, err := h.OpenInGroup("t", limit, opts("t/a")); err != nil || again != a {
		t.Fatalf("reopening t/a at the limit = %p, %v; want %p", again, err, a)
	}
	if other, err := h.OpenInGroup("u", 1, opts("u/a")); err != nil || other == nil {
		t.Fatalf("another group: %v", err)
	}
	var names []string
	for _, c := range h.Channels() {
		names = append(names, c.Name())
	}
	if want := "static t/a t/b u/a"; strings.Join(names, " ") != want {
		t.Errorf("Channels() = %q, want %q", names, want)
	}

	// t/a serves a subscriber, then goes idle and closes, freeing its slot.
	s := subscribe(t, a, SubscribeOptions{})
	fc := f.next(t)
	if fc.path != "/t/a" {
		t.Fatalf("connection on %s", fc.path)
	}
	fc.send(t, "hello")
	if got := readN(t, s, 1); string(got[0].Data) != "hello" {
		t.Errorf("got %q", got[0].Data)
	}
	s.Close()
	fc.waitGone(t)
	wstest.Eventually(t, "the idle channel to leave the hub", func() bool { return h.Get("t/a") == nil })
	if _, err := a.Subscribe(SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe on the idle-closed channel: %v, want ErrClosed", err)
	}
	c, err := h.OpenInGroup("t", limit, opts("t/c"))
	if err != nil {
		t.Fatalf("opening t/c after t/a closed: %v", err)
	}
	a2, err := h.OpenInGroup("t", limit+1, opts("t/a"))
	if err != nil || a2 == a {
		t.Fatalf("reopening t/a: %p, %v", a2, err)
	}
	if h.Get("t/b") != b || h.Get("t/c") != c {
		t.Error("Get does not find the group's open channels")
	}

	// Close ends everything.
	s2 := subscribe(t, static, SubscribeOptions{})
	s3 := subscribe(t, c, SubscribeOptions{})
	if fc := f.next(t); fc.path != "/t/c" {
		t.Fatalf("connection on %s", fc.path)
	}
	h.Close()
	for _, s := range []*Subscription{s2, s3} {
		if !errors.Is(s.Err(), ErrClosed) {
			t.Errorf("after Hub.Close: Err() = %v, want ErrClosed", s.Err())
		}
	}
	if len(h.Channels()) != 0 || h.Get("static") != nil {
		t.Errorf("channels left after Close: %d", len(h.Channels()))
	}
	if _, err := h.Open(opts("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
	if _, err := static.Subscribe(SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Hub.Close: %v", err)
	}
}

// A templated channel opened but never subscribed to (its client was turned
// away after the open) must not keep its slot.
func TestHubUnusedGroupedChannelFreesItsSlot(t *testing.T) {
	f := newFeed(t)
	h := NewHub()
	t.Cleanup(h.Close)
	opts := Options{Name: "t/a", Upstream: upstreamOpts(f, "/t/a"), Linger: 20 * time.Millisecond, Logger: wstest.Logger(t)}
	a, err := h.OpenInGroup("t", 1, opts)
	if err != nil {
		t.Fatal(err)
	}
	wstest.Eventually(t, "the unused channel to close", func() bool { return h.Get("t/a") == nil })
	if _, err := a.Subscribe(SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe on the closed channel: %v, want ErrClosed", err)
	}
	opts.Name = "t/b"
	if _, err := h.OpenInGroup("t", 1, opts); err != nil {
		t.Fatalf("the slot was not freed: %v", err)
	}
}
