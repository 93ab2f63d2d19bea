package bridge

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

// frames returns n JSON frames {"n":from}, {"n":from+1}, …
func frames(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"n":%d}`, from+i)
	}
	return out
}

func TestEventsCarryIDNameDataAndWireForms(t *testing.T) {
	f := newFeed(t)
	clk := newClock()
	c := newChannel(t, f, "/wire", Options{EventField: "/meta/type", Now: clk.Now})
	fc := f.next(t)
	s := subscribe(t, c, SubscribeOptions{})

	fc.send(t, `{"meta":{"type":"trade"},"p":1}`)
	fc.send(t, "{\"meta\":{\"type\":\"quote\"},\n\"p\":2}")
	got := readN(t, s, 2)
	clk.Advance(time.Millisecond)
	fc.send(t, `not json`)
	got = append(got, readN(t, s, 1)...)

	want := []struct{ id, name, data string }{
		{"1700000000000-0", "trade", `{"meta":{"type":"trade"},"p":1}`},
		{"1700000000000-1", "quote", "{\"meta\":{\"type\":\"quote\"},\n\"p\":2}"},
		{"1700000000001-0", "message", `not json`},
	}
	var stream []byte
	for i, e := range got {
		w := want[i]
		if e.ID != w.id || e.Name != w.name || string(e.Data) != w.data || e.Binary || e.Notice() {
			t.Errorf("event %d = {%s %s %q binary=%v notice=%v}, want {%s %s %q}",
				i, e.ID, e.Name, e.Data, e.Binary, e.Notice(), w.id, w.name, w.data)
		}
		stream = append(stream, e.SSE...)
		var j struct {
			ID    string          `json:"id"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(e.JSON, &j); err != nil || j.ID != w.id || j.Event != w.name {
			t.Errorf("event %d JSON = %s (%v)", i, e.JSON, err)
		}
	}
	// What an EventSource sees.
	parsed, err := sse.ParseAll(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != 3 {
		t.Fatalf("the SSE bytes hold %d events, want 3: %q", len(parsed), stream)
	}
	for i, p := range parsed {
		if w := want[i]; p.ID != w.id || p.Name != w.name || p.Data != w.data {
			t.Errorf("SSE event %d = %+v, want %+v", i, p, w)
		}
	}
	if inf := c.Info(); inf.EventsIn != 3 || inf.LastEventID != "1700000000001-0" || inf.Clients() != 1 ||
		strings.Join(inf.EventNames, " ") != "trade quote message" {
		t.Errorf("Info() = %+v", inf)
	}
}

func TestResumeExact(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/resume", Options{})
	fc := f.next(t)
	const n = 20
	all := publish(t, c, fc, nil, 0, frames(0, n)...)
	for i := 1; i < n; i++ {
		if !all[i-1].key.less(all[i].key) {
			t.Fatalf("ids not increasing: %q", ids(all))
		}
	}

	for _, k := range []int{0, 7, n - 2, n - 1} {
		s := subscribe(t, c, SubscribeOptions{LastEventID: all[k].ID})
		if id, gap := s.Gap(); gap {
			t.Errorf("resume from event %d (%s): gap reported for %q", k, all[k].ID, id)
		}
		if k < n-1 {
			got := readN(t, s, n-1-k)
			if !slices.Equal(ids(got), ids(all[k+1:])) || !slices.Equal(datas(got), datas(all[k+1:])) {
				t.Errorf("resume from event %d: got %q, want %q", k, datas(got), datas(all[k+1:]))
			}
		}
		readNone(t, s)
	}

	// Then live events follow, once.
	s := subscribe(t, c, SubscribeOptions{LastEventID: all[n-5].ID})
	fc.send(t, `{"n":"live"}`)
	got := readN(t, s, 5)
	want := append(datas(all[n-4:]), `{"n":"live"}`)
	if !slices.Equal(datas(got), want) {
		t.Errorf("got %q, want %q", datas(got), want)
	}
	readNone(t, s)
}

// TestResumeUnderLoad resumes over and over while the upstream sends as
// fast as it can: the events read, joined up, are the upstream's frames,
// each once and in order.
func TestResumeUnderLoad(t *testing.T) {
	const total = 6000
	f := newFeed(t)
	c := newChannel(t, f, "/load", Options{Replay: total, Queue: total})
	fc := f.next(t)

	first := subscribe(t, c, SubscribeOptions{})
	stop, sent := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sent)
		for i := range total {
			select {
			case fc.frames <- feedFrame{data: strconv.AppendInt(nil, int64(i), 10)}:
			case <-fc.gone:
				t.Errorf("upstream connection ended after %d frames", i)
				return
			case <-stop:
				return
			}
		}
	}()
	defer func() {
		close(stop)
		<-sent
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	var (
		got     []string
		lastID  string
		resumes int
		buf     []*Event
	)
	s := first
	deadline := time.After(waitFor)
	for len(got) < total {
		want := 1 + rng.IntN(40)
		var taken int
		for taken < want && len(got) < total {
			var err error
			buf, err = s.Read(buf[:0])
			if err != nil {
				t.Fatalf("Read after %d events and %d resumes: %v", len(got), resumes, err)
			}
			for _, e := range buf {
				if taken == want {
					break // left unread; the next subscription must deliver it
				}
				got = append(got, string(e.Data))
				lastID = e.ID
				taken++
			}
			if taken < want && len(got) < total {
				select {
				case <-s.Wake():
				case <-deadline:
					t.Fatalf("stalled after %d events and %d resumes", len(got), resumes)
				}
			}
		}
		s.Close()
		var err error
		s, err = c.Subscribe(SubscribeOptions{LastEventID: lastID})
		if err != nil {
			t.Fatal(err)
		}
		if id, gap := s.Gap(); gap {
			t.Fatalf("resume %d from %q reported a gap (%q)", resumes, lastID, id)
		}
		resumes++
	}
	readNone(t, s)
	s.Close()

	if resumes < 200 {
		t.Errorf("only %d resumes", resumes)
	}
	for i, d := range got {
		if d != strconv.Itoa(i) {
			t.Fatalf("event %d of the joined stream is %s (then %q)", i, d, got[i:min(i+5, len(got))])
		}
	}
	t.Logf("%d events over %d resumes", len(got), resumes)
}

func TestResumeGap(t *testing.T) {
	f := newFeed(t)

	// Channel A, before a restart, and B after it, an hour later.
	clkA := newClock()
	a := newChannel(t, f, "/a", Options{Now: clkA.Now})
	evA := publish(t, a, f.next(t), clkA, 10*time.Millisecond, frames(0, 3)...)
	a.Close()

	clk := newClock()
	clk.Advance(time.Hour)
	c := newChannel(t, f, "/b", Options{Replay: 5, ReplayAge: time.Minute, Now: clk.Now})
	fc := f.next(t)
	// Ten events 10 ms apart: only the last five are kept.
	all := publish(t, c, fc, clk, 10*time.Millisecond, frames(0, 10)...)
	window := all[5:]

	between := fmt.Sprintf("%d-0", all[7].key.ms-5) // well-formed, within the window, never issued
	future := fmt.Sprintf("%d-0", all[9].key.ms+1000)
	long := strings.Repeat("1", 100) + "-" + strings.Repeat("2", 99)
	tests := []struct {
		desc, id string
	}{
		{"evicted by count", all[2].ID},
		{"just before the window", all[4].ID},
		{"never issued", between},
		{"from the future", future},
		{"before a restart", evA[1].ID},
		{"before a restart, newest", evA[2].ID},
		{"malformed", "abc"},
		{"malformed, leading zero", "0" + all[7].ID},
		{"malformed, three parts", all[7].ID + "-1"},
		{"200 bytes", long},
		{"not the id alphabet", "1700000000000-0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := subscribe(t, c, SubscribeOptions{LastEventID: tt.id})
			id, gap := s.Gap()
			if !gap || id != tt.id {
				t.Errorf("Gap() = %q, %v; want %q, true", id, gap, tt.id)
			}
			got := readN(t, s, len(window))
			if !slices.Equal(ids(got), ids(window)) {
				t.Errorf("got %q, want the window %q", ids(got), ids(window))
			}
		})
	}

	t.Run("older than ReplayAge", func(t *testing.T) {
		// A minute later, two more events; the first ten have aged out.
		clk.Advance(time.Minute)
		fresh := publish(t, c, fc, nil, 0, frames(10, 2)...)
		for _, id := range []string{all[9].ID, all[6].ID} {
			s := subscribe(t, c, SubscribeOptions{LastEventID: id})
			if got, gap := s.Gap(); !gap || got != id {
				t.Errorf("Gap() = %q, %v; want %q, true", got, gap, id)
			}
			got := readN(t, s, 2)
			if !slices.Equal(ids(got), ids(fresh)) {
				t.Errorf("got %q, want %q", ids(got), ids(fresh))
			}
		}
		// While the newest events are still resumable.
		s := subscribe(t, c, SubscribeOptions{LastEventID: fresh[0].ID})
		if _, gap := s.Gap(); gap {
			t.Error("gap resuming from a fresh event")
		}
		if got := readN(t, s, 1); got[0] != fresh[1] {
			t.Errorf("got %q, want %q", got[0].ID, fresh[1].ID)
		}
	})

	t.Run("no resume id", func(t *testing.T) {
		s := subscribe(t, c, SubscribeOptions{})
		if id, gap := s.Gap(); gap || id != "" {
			t.Errorf("Gap() = %q, %v; want none", id, gap)
		}
		readNone(t, s)
	})
}

// TestGapResumeKeepsItsWindow: a client that resumes into the replay window
// is owed the whole window, even when new events arrive before its first
// read and push the oldest of them out of the buffer.
func TestGapResumeKeepsItsWindow(t *testing.T) {
	f := newFeed(t)
	clk := newClock()
	c := newChannel(t, f, "/window", Options{Replay: 4, Queue: 4, ReplayOnConnect: 4, ReplayAge: time.Minute, Now: clk.Now})
	fc := f.next(t)
	all := publish(t, c, fc, clk, time.Second, frames(0, 10)...)

	gapped := subscribe(t, c, SubscribeOptions{LastEventID: "1-0"})
	fresh := subscribe(t, c, SubscribeOptions{})
	resumed := subscribe(t, c, SubscribeOptions{LastEventID: all[6].ID})
	// 50 seconds on, the oldest event of the window is near ReplayAge.
	clk.Advance(50 * time.Second)
	more := publish(t, c, fc, clk, 0, frames(10, 2)...)

	want := append(ids(all[6:]), ids(more)...)
	for name, s := range map[string]*Subscription{"gap": gapped, "replay on connect": fresh} {
		if got := readN(t, s, len(want)); !slices.Equal(ids(got), want) {
			t.Errorf("%s: got %q, want %q", name, ids(got), want)
		}
	}
	if got := readN(t, resumed, len(want)-1); !slices.Equal(ids(got), want[1:]) {
		t.Errorf("resumed: got %q, want %q", ids(got), want[1:])
	}

	// The same with the oldest event of the window ageing out.
	gapped = subscribe(t, c, SubscribeOptions{LastEventID: "1-0"})
	clk.Advance(time.Minute - time.Second)
	more2 := publish(t, c, fc, clk, 0, frames(12, 1)...)
	want = append(append(ids(all[8:]), ids(more)...), ids(more2)...)
	if got := readN(t, gapped, len(want)); !slices.Equal(ids(got), want) {
		t.Errorf("gap, ageing: got %q, want %q", ids(got), want)
	}
}

func TestReplayOnConnect(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/roc", Options{ReplayOnConnect: 3})
	fc := f.next(t)

	s0 := subscribe(t, c, SubscribeOptions{})
	readNone(t, s0) // nothing to replay yet

	all := publish(t, c, fc, nil, 0, frames(0, 5)...)
	s := subscribe(t, c, SubscribeOptions{})
	if _, gap := s.Gap(); gap {
		t.Error("gap for a client that did not resume")
	}
	fc.send(t, `{"n":"live"}`)
	got := readN(t, s, 4)
	want := append(datas(all[2:]), `{"n":"live"}`)
	if !slices.Equal(datas(got), want) {
		t.Errorf("got %q, want %q", datas(got), want)
	}
	if got := readN(t, s0, 6); !slices.Equal(datas(got), append(datas(all), `{"n":"live"}`)) {
		t.Errorf("first subscriber got %q", datas(got))
	}
}

func TestSlowSubscriber(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/slow", Options{Queue: 8})
	fc := f.next(t)

	var ends atomic.Int32
	var endErr atomic.Value
	slow := subscribe(t, c, SubscribeOptions{OnEnd: func(err error) {
		ends.Add(1)
		endErr.Store(err)
	}})
	fast := subscribe(t, c, SubscribeOptions{OnEnd: func(err error) { t.Errorf("fast subscriber ended: %v", err) }})

	const n = 100
	var got []*Event
	for i := range n {
		fc.send(t, strconv.Itoa(i))
		got = append(got, readN(t, fast, 1)...)
		// It is 9 events behind once event 8 is out: ended then, not before.
		select {
		case <-slow.Done():
			if i < 8 {
				t.Fatalf("slow subscriber ended after %d events, with a queue of 8", i+1)
			}
		default:
			if i >= 8 {
				t.Fatalf("slow subscriber still on after %d events, with a queue of 8", i+1)
			}
		}
	}

	for i, e := range got {
		if string(e.Data) != strconv.Itoa(i) {
			t.Fatalf("fast subscriber's event %d is %q", i, e.Data)
		}
	}
	if n := ends.Load(); n != 1 {
		t.Errorf("OnEnd called %d times, want 1", n)
	}
	if err, _ := endErr.Load().(error); !errors.Is(err, ErrSlowClient) {
		t.Errorf("OnEnd(%v), want ErrSlowClient", err)
	}
	if !errors.Is(slow.Err(), ErrSlowClient) {
		t.Errorf("Err() = %v, want ErrSlowClient", slow.Err())
	}
	if evs, err := slow.Read(nil); len(evs) != 0 || !errors.Is(err, ErrSlowClient) {
		t.Errorf("Read = %d events, %v; want ErrSlowClient", len(evs), err)
	}
	slow.Close() // harmless once ended
	inf := c.Info()
	if inf.EventsIn != n || inf.SlowClients != 1 || inf.Clients() != 1 || inf.Subscriptions != 2 {
		t.Errorf("Info() = %+v; want %d events in, 1 slow client, 1 client, 2 subscriptions", inf, n)
	}
	// It resumes where it was and gets everything since.
	back := subscribe(t, c, SubscribeOptions{LastEventID: got[3].ID})
	if re := readN(t, back, n-4); re[0] != got[4] || re[len(re)-1] != got[n-1] {
		t.Errorf("resumed with %q … %q", re[0].Data, re[len(re)-1].Data)
	}
}

func TestEagerConnectsAtOnce(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/eager", Options{})
	fc := f.next(t)
	if fc.path != "/eager" || !c.running() {
		t.Fatalf("connection on %s, running %v", fc.path, c.running())
	}
	wstest.Eventually(t, "the channel to be up", func() bool { return c.Info().State.State == upstream.StateUp })
	s := subscribe(t, c, SubscribeOptions{})
	s.Close()
	fc.send(t, "still here") // no linger for an eager channel: the connection stays
	c.Close()
	fc.waitGone(t)
	if c.Info().State.State != upstream.StateDown {
		t.Errorf("state after Close = %v", c.Info().State.State)
	}
	if _, err := c.Subscribe(SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestLazy(t *testing.T) {
	f := newFeed(t)
	// Long enough that a loaded machine does not outlast it between the
	// steps below that must fit within it.
	const linger = 250 * time.Millisecond
	var idle atomic.Int32
	lazy := newChannel(t, f, "/lazy", Options{Lazy: true, Linger: linger, OnIdle: func(*Channel) { idle.Add(1) }})
	// An eager channel on the same server, made after the lazy one, gets
	// the server's first connection.
	newChannel(t, f, "/eager", Options{})
	if fc := f.next(t); fc.path != "/eager" {
		t.Fatalf("first connection on %s", fc.path)
	}
	if n := f.accepted("/lazy"); n != 0 || lazy.running() {
		t.Fatalf("lazy channel with no subscriber: %d connections, running %v", n, lazy.running())
	}
	if st := lazy.Info().State.State; st != upstream.StateDown {
		t.Errorf("state with no subscriber = %v", st)
	}

	// The first subscriber connects it. (A channel nobody subscribes to
	// goes idle too: OnIdle may have been called already, or be on its way
	// until the channel has connected.)
	s1 := subscribe(t, lazy, SubscribeOptions{})
	fc := f.next(t)
	if fc.path != "/lazy" {
		t.Fatalf("connection on %s", fc.path)
	}
	fc.send(t, "one")
	e1 := readN(t, s1, 1)[0]
	idle0 := idle.Load()

	// A subscriber that leaves and comes back within the linger keeps it.
	s1.Close()
	s2 := subscribe(t, lazy, SubscribeOptions{})
	time.Sleep(3 * linger)
	fc.send(t, "two")
	if got := readN(t, s2, 1); string(got[0].Data) != "two" || f.accepted("/lazy") != 1 || idle.Load() != idle0 {
		t.Fatalf("got %q; %d connections, %d idle calls", got[0].Data, f.accepted("/lazy"), idle.Load()-idle0)
	}

	// The last one leaving disconnects it, after the linger.
	left := time.Now()
	s2.Close()
	fc.waitGone(t)
	if d := time.Since(left); d < linger {
		t.Errorf("disconnected %v after the last subscriber left; linger is %v", d, linger)
	}
	wstest.Eventually(t, "OnIdle to be called", func() bool { return idle.Load() == idle0+1 })
	if lazy.running() || lazy.Info().State.State != upstream.StateDown {
		t.Errorf("running %v, state %v after the linger", lazy.running(), lazy.Info().State.State)
	}

	// A new subscriber reconnects it; ids carry on.
	s3 := subscribe(t, lazy, SubscribeOptions{LastEventID: e1.ID})
	fc = f.next(t)
	if fc.path != "/lazy" || f.accepted("/lazy") != 2 {
		t.Fatalf("reconnection on %s, %d connections", fc.path, f.accepted("/lazy"))
	}
	fc.send(t, "three")
	got := readN(t, s3, 2)
	if !slices.Equal(datas(got), []string{"two", "three"}) || !e1.key.less(got[0].key) || !got[0].key.less(got[1].key) {
		t.Errorf("after reconnecting: %q %q", ids(got), datas(got))
	}
}

func TestLingerNegativeDisconnectsAtOnce(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/now", Options{Lazy: true, Linger: -1})
	s := subscribe(t, c, SubscribeOptions{})
	fc := f.next(t)
	s.Close()
	fc.waitGone(t) // well before the 30 s default
	if c.running() {
		t.Error("still running")
	}
}

func TestStatusEvents(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/status", Options{Lazy: true, StatusEvents: true, ReplayOnConnect: 10})
	s := subscribe(t, c, SubscribeOptions{})
	fc := f.next(t)

	up := readN(t, s, 1)[0]
	fc.send(t, "a")
	a := readN(t, s, 1)[0]
	close(fc.hangup) // the upstream restarts, within milliseconds
	fc = f.next(t)
	got := readN(t, s, 2)
	down, up2 := got[0], got[1]
	fc.send(t, "b")
	b := readN(t, s, 1)[0]

	for _, n := range []*Event{up, down, up2} {
		if !n.Notice() || n.ID != "" || n.Name != "upstream" {
			t.Errorf("notice = {id %q name %q notice %v}", n.ID, n.Name, n.Notice())
		}
		parsed, err := sse.ParseAll(n.SSE)
		if err != nil || len(parsed) != 1 || parsed[0].Name != "upstream" || parsed[0].ID != "" || parsed[0].Data != string(n.Data) {
			t.Errorf("notice SSE %q parses as %+v, %v", n.SSE, parsed, err)
		}
		if strings.Contains(string(n.SSE), "id:") || strings.Contains(string(n.JSON), `"id"`) {
			t.Errorf("notice carries an id: %q, %s", n.SSE, n.JSON)
		}
	}
	if string(up.Data) != `{"state":"up"}` || string(up2.Data) != `{"state":"up"}` {
		t.Errorf("up notices: %s, %s", up.Data, up2.Data)
	}
	var d struct {
		State     string `json:"state"`
		Error     string `json:"error"`
		RetryInMs *int64 `json:"retryInMs"`
	}
	if err := json.Unmarshal(down.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.State != "down" || d.Error == "" || d.RetryInMs == nil || *d.RetryInMs < 5 || *d.RetryInMs > 20 {
		t.Errorf("down notice = %s; want state down, an error and retryInMs within the backoff", down.Data)
	}
	if string(down.JSON) != `{"event":"upstream","data":`+string(down.Data)+`}` {
		t.Errorf("down notice JSON = %s", down.JSON)
	}
	if string(a.Data) != "a" || string(b.Data) != "b" || !a.key.less(b.key) {
		t.Errorf("events %s %q, %s %q", a.ID, a.Data, b.ID, b.Data)
	}

	// Notices are not replayed to a later subscriber, nor do they move a
	// resume point.
	late := subscribe(t, c, SubscribeOptions{})
	if got := readN(t, late, 2); got[0] != a || got[1] != b {
		t.Errorf("late subscriber got %q", datas(got))
	}
	resumed := subscribe(t, c, SubscribeOptions{LastEventID: a.ID})
	if got := readN(t, resumed, 1); got[0] != b {
		t.Errorf("resumed from a: got %q", datas(got))
	}
	if _, gap := resumed.Gap(); gap {
		t.Error("resume across notices reported a gap")
	}
}

func TestBinaryFrames(t *testing.T) {
	raw := []byte{0, 1, 2, 0xff, '\n'}
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("DropBinary=%v", drop), func(t *testing.T) {
			f := newFeed(t)
			c := newChannel(t, f, "/bin", Options{DropBinary: drop, EventField: "type"})
			fc := f.next(t)
			s := subscribe(t, c, SubscribeOptions{})
			fc.sendFrame(t, feedFrame{binary: true, data: raw})
			fc.sendFrame(t, feedFrame{binary: true, data: []byte(`{"type":"tick"}`)})
			got := readN(t, s, 2)

			for i, e := range got {
				if !e.Binary || e.Name != "message" || e.ID == "" {
					t.Errorf("event %d: binary %v name %q id %q", i, e.Binary, e.Name, e.ID)
				}
			}
			e := got[0]
			if string(e.Data) != string(raw) {
				t.Errorf("Data = %q, want %q", e.Data, raw)
			}
			b64 := base64.StdEncoding.EncodeToString(raw)
			if want := `{"id":"` + e.ID + `","event":"message","data":"` + b64 + `"}`; string(e.JSON) != want {
				t.Errorf("JSON = %s, want %s", e.JSON, want)
			}
			if drop {
				if e.SSE != nil || got[1].SSE != nil {
					t.Errorf("SSE = %q, %q; want nil", e.SSE, got[1].SSE)
				}
				return
			}
			parsed, err := sse.ParseAll(append(slices.Clip(e.SSE), got[1].SSE...))
			if err != nil || len(parsed) != 2 ||
				parsed[0] != (sse.Event{ID: e.ID, Name: "message", Data: b64}) ||
				parsed[1] != (sse.Event{ID: got[1].ID, Name: "message", Data: "eyJ0eXBlIjoidGljayJ9"}) {
				t.Errorf("SSE %q parses as %+v, %v", e.SSE, parsed, err)
			}
		})
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	f := newFeed(t)
	c := newChannel(t, f, "/close", Options{})
	fc := f.next(t)
	var ended atomic.Value
	s := subscribe(t, c, SubscribeOptions{OnEnd: func(err error) { ended.Store(err) }})
	fc.send(t, "x")
	readN(t, s, 1)
	c.Close()
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed by Close")
	}
	if err, _ := ended.Load().(error); !errors.Is(err, ErrClosed) || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("OnEnd(%v), Err() = %v; want ErrClosed", err, s.Err())
	}
	if _, err := s.Read(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Read: %v, want ErrClosed", err)
	}
	fc.waitGone(t)
	c.Close() // again: no effect
}
