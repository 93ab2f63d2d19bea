package downstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/upstream"
)

var idRE = regexp.MustCompile(`^([1-9][0-9]*)-(0|[1-9][0-9]*)$`)

// idLess orders two event ids "<ms>-<seq>".
func idLess(t *testing.T, a, b string) bool {
	t.Helper()
	ma, mb := idRE.FindStringSubmatch(a), idRE.FindStringSubmatch(b)
	if ma == nil || mb == nil {
		t.Fatalf("malformed event ids %q, %q", a, b)
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	return n(ma[1]) < n(mb[1]) || n(ma[1]) == n(mb[1]) && n(ma[2]) < n(mb[2])
}

func checkSSEHeaders(t *testing.T, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}
}

func TestSSEWireFormat(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{EventField: "type"})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	c := ts.stream(t, "/stream", nil)
	checkSSEHeaders(t, c.resp.Header)

	cases := []struct {
		name   string
		binary bool
		frame  string
		event  string   // want: the event type, "" for message (no event: line)
		lines  []string // want: the data lines on the wire
		data   string   // want: what EventSource delivers
	}{
		{"plain", false, "hello", "", []string{"hello"}, "hello"},
		{"LF CR CRLF", false, "one\ntwo\rthree\r\nfour", "", []string{"one", "two", "three", "four"}, "one\ntwo\nthree\nfour"},
		{"leading space", false, " spaced", "", []string{" spaced"}, " spaced"},
		{"unicode", false, "héllo, 世界 🎉", "", []string{"héllo, 世界 🎉"}, "héllo, 世界 🎉"},
		{"invalid UTF-8", false, "a\xffb\xe2\x82c", "", []string{"a\uFFFDb\uFFFDc"}, "a\uFFFDb\uFFFDc"},
		{"named", false, `{"type":"price","v":1}`, "price", []string{`{"type":"price","v":1}`}, `{"type":"price","v":1}`},
		{"reserved name", false, `{"type":"gap"}`, "", []string{`{"type":"gap"}`}, `{"type":"gap"}`},
		{"empty", false, "", "", []string{""}, ""},
		{"trailing LF", false, "tail\n", "", []string{"tail", ""}, "tail\n"},
		{"injection", false, "x\n\nid: 1\nevent: evil\nretry: 1", "", []string{"x", "", "id: 1", "event: evil", "retry: 1"}, "x\n\nid: 1\nevent: evil\nretry: 1"},
		{"binary", true, "\x00\xff\x10", "", []string{"AP8Q"}, "AP8Q"},
	}
	want := "retry: 2000\n\n"
	prev := ""
	for _, tc := range cases {
		typ := websocket.MessageText
		if tc.binary {
			typ = websocket.MessageBinary
		}
		f.send(t, typ, []byte(tc.frame))
		ev := c.next(t)
		if !idRE.MatchString(ev.ID) || prev != "" && !idLess(t, prev, ev.ID) {
			t.Errorf("%s: id %q after %q: want a larger <ms>-<seq>", tc.name, ev.ID, prev)
		}
		prev = ev.ID
		name := tc.event
		if name == "" {
			name = "message"
		}
		if ev.Name != name || ev.Data != tc.data {
			t.Errorf("%s: got %s %q, want %s %q", tc.name, ev.Name, ev.Data, name, tc.data)
		}
		want += "id: " + ev.ID + "\n"
		if tc.event != "" {
			want += "event: " + tc.event + "\n"
		}
		for _, l := range tc.lines {
			if l == "" {
				want += "data:\n"
			} else {
				want += "data: " + l + "\n"
			}
		}
		want += "\n"
	}
	if got := c.raw.String(); got != want {
		t.Errorf("wire bytes:\n got %q\nwant %q", got, want)
	}
	if r, ok := c.p.Retry(); !ok || r != 2*time.Second {
		t.Errorf("retry = %v, %v; want 2s", r, ok)
	}
	if got := ch.Info().LastEventID; got != prev {
		t.Errorf("channel's last id %q, client's %q", got, prev)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	const hb = 50 * time.Millisecond
	ts := newServer(t, Options{Heartbeat: hb}, Static(ch))
	start := time.Now()
	c := ts.stream(t, "/stream", nil)

	// Heartbeats are not events, so the raw stream is read until three
	// have arrived, then until an event, and parsed as a whole.
	body := io.TeeReader(c.resp.Body, c.raw)
	buf := make([]byte, 256)
	readUntil := func(done func(string) bool) {
		t.Helper()
		for !done(c.raw.String()) {
			if _, err := body.Read(buf); err != nil {
				t.Fatalf("reading the stream: %v (read: %q)", err, c.raw.String())
			}
		}
	}
	readUntil(func(raw string) bool { return strings.Count(raw, "\n: ") >= 3 })
	if took := time.Since(start); took < 3*hb {
		t.Errorf("three heartbeats in %v, want them %v apart", took, hb)
	}
	f.text(t, "after")
	readUntil(func(raw string) bool { return strings.HasSuffix(raw, "data: after\n\n") })

	raw := c.raw.String()
	p := sse.NewParser(strings.NewReader(raw))
	if ev, err := p.Next(); err != nil || ev.Data != "after" {
		t.Fatalf("parsed %+v, %v; want the event after the heartbeats", ev, err)
	}
	if _, err := p.Next(); err != io.EOF {
		t.Fatalf("parsed more than one event from %q", raw)
	}
	if n := p.Comments(); n < 3 {
		t.Errorf("parser saw %d comments in %q, want at least 3", n, raw)
	}
	if !strings.HasPrefix(raw, "retry: 2000\n\n: ") {
		t.Errorf("stream starts %q, want the retry then a comment", raw)
	}
	for _, block := range strings.Split(strings.TrimSuffix(raw, "\n\n"), "\n\n")[1:] {
		if !strings.HasPrefix(block, ": ") && !strings.HasPrefix(block, "id: ") {
			t.Errorf("unexpected block %q", block)
		}
	}
}

func TestSSEResume(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	ids := publishN(t, f, ch, "e", 5)

	t.Run("header", func(t *testing.T) {
		c := ts.stream(t, "/stream", http.Header{"Last-Event-Id": {ids[1]}})
		evs := c.expectData(t, "e2", "e3", "e4")
		for i, ev := range evs {
			if ev.ID != ids[i+2] {
				t.Errorf("event %d: id %q, want %q", i, ev.ID, ids[i+2])
			}
		}
	})
	t.Run("query", func(t *testing.T) {
		c := ts.stream(t, "/stream?lastEventId="+ids[3], nil)
		c.expectData(t, "e4")
	})
	t.Run("header over query", func(t *testing.T) {
		c := ts.stream(t, "/stream?lastEventId="+ids[0], http.Header{"Last-Event-Id": {ids[3]}})
		c.expectData(t, "e4")
	})
	t.Run("newest id", func(t *testing.T) {
		c := ts.stream(t, "/stream", http.Header{"Last-Event-Id": {ids[4]}})
		id := publish(t, f, ch, websocket.MessageText, []byte("live"))
		if ev := c.expectData(t, "live")[0]; ev.ID != id {
			t.Errorf("id %q, want %q", ev.ID, id)
		}
		if !strings.HasPrefix(c.raw.String(), "retry: 2000\n\nid: "+id+"\n") {
			t.Errorf("stream %q: want the live event right after retry, no gap", c.raw.String())
		}
	})
}

func TestSSEResumeGap(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	ids := publishN(t, f, ch, "e", 3)
	all := []string{"e0", "e1", "e2"}

	long := strings.Repeat("a", 200)
	for _, tc := range []struct {
		name, path string
		hdr        http.Header
		sent       string // the lastEventId the gap reports
	}{
		{"unknown", "/stream", http.Header{"Last-Event-Id": {"1-0"}}, "1-0"},
		{"malformed", "/stream", http.Header{"Last-Event-Id": {`x"y\z`}}, `x"y\z`},
		{"query", "/stream?lastEventId=zzz", nil, "zzz"},
		{"too long", "/stream?lastEventId=" + long, nil, long[:MaxResumeID]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.stream(t, tc.path, tc.hdr)
			gap := c.next(t)
			wantData := fmt.Sprintf(`{"lastEventId":%q,"next":%q}`, tc.sent, ids[0])
			if gap.Name != "gap" || gap.Data != wantData {
				t.Fatalf("first event: %s %s, want gap %s", gap.Name, gap.Data, wantData)
			}
			if gap.ID != "" {
				t.Errorf("gap moved the resume id to %q", gap.ID)
			}
			evs := c.expectData(t, all...)
			for i, ev := range evs {
				if ev.ID != ids[i] {
					t.Errorf("event %d: id %q, want %q", i, ev.ID, ids[i])
				}
			}
			wantPrefix := "retry: 2000\n\nevent: gap\ndata: " + wantData + "\n\nid: " + ids[0] + "\n"
			if !strings.HasPrefix(c.raw.String(), wantPrefix) {
				t.Errorf("stream %q, want it to start %q", c.raw.String(), wantPrefix)
			}
		})
	}

	// A gap with nothing buffered names the first live event.
	t.Run("empty buffer", func(t *testing.T) {
		f := newFeed(t)
		ch := newChannel(t, f, bridge.Options{Name: "empty"})
		ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
		c := ts.stream(t, "/stream", http.Header{"Last-Event-Id": {ids[2]}})
		id := publish(t, f, ch, websocket.MessageText, []byte("first"))
		gap := c.next(t)
		if want := fmt.Sprintf(`{"lastEventId":%q,"next":%q}`, ids[2], id); gap.Name != "gap" || gap.Data != want {
			t.Fatalf("got %s %s, want gap %s", gap.Name, gap.Data, want)
		}
		c.expectData(t, "first")
	})
}

func TestSSEReplayOnConnect(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{ReplayOnConnect: 2})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	publishN(t, f, ch, "e", 5)
	c := ts.stream(t, "/stream", nil)
	c.expectData(t, "e3", "e4")
	f.text(t, "live")
	c.expectData(t, "live")
	if strings.Contains(c.raw.String(), "event: gap") {
		t.Errorf("a client that did not resume got a gap: %q", c.raw.String())
	}
}

// TestSSEResumeWhilePublishing resumes from the middle of a stream while
// events keep arriving: the resumed client gets exactly what followed, with
// no gap and no duplicate.
func TestSSEResumeWhilePublishing(t *testing.T) {
	f := newFeed(t)
	const total, resumeAt = 2000, 100
	ch := newChannel(t, f, bridge.Options{Replay: 2 * total, Queue: 2 * total})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))

	type result struct {
		evs []sse.Event
		err error
	}
	// read reads n events, sending each on seen if it is not nil.
	read := func(c *sseClient, n int, seen chan<- sse.Event) <-chan result {
		out := make(chan result, 1)
		go func() {
			var r result
			for len(r.evs) < n {
				ev, err := c.p.Next()
				if err != nil {
					r.err = err
					break
				}
				r.evs = append(r.evs, ev)
				if seen != nil {
					seen <- ev
				}
			}
			out <- r
		}()
		return out
	}
	seen := make(chan sse.Event, total)
	observer := read(ts.stream(t, "/stream", nil), total, seen)

	up := f.conn(t)
	published := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		for i := range total {
			if err := up.Write(ctx, websocket.MessageText, []byte("e"+strconv.Itoa(i))); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()

	var last sse.Event
	for range resumeAt {
		select {
		case last = <-seen:
		case <-time.After(waitTimeout):
			t.Fatal("the observer stopped receiving")
		}
	}
	inFlight := ch.Info().EventsIn < total
	resumed := read(ts.stream(t, "/stream", http.Header{"Last-Event-Id": {last.ID}}), total-resumeAt, nil)

	if err := <-published; err != nil {
		t.Fatalf("upstream write: %v", err)
	}
	o, r := <-observer, <-resumed
	if o.err != nil || r.err != nil {
		t.Fatalf("observer: %d events, %v; resumed: %d events, %v", len(o.evs), o.err, len(r.evs), r.err)
	}
	for i, ev := range o.evs {
		if want := "e" + strconv.Itoa(i); ev.Data != want {
			t.Fatalf("observer's event %d is %q, want %q", i, ev.Data, want)
		}
	}
	for i, ev := range r.evs {
		if want := o.evs[resumeAt+i]; ev != want {
			t.Fatalf("resumed event %d: %+v, want %+v", i, ev, want)
		}
	}
	t.Logf("resumed with %d of %d events published", resumeAt, total)
	if !inFlight {
		t.Log("publishing had finished when the client resumed")
	}
}

func TestSSEUpstreamStatus(t *testing.T) {
	f := newFeed(t)
	const backoff = 300 * time.Millisecond
	ch := newChannel(t, f, bridge.Options{
		StatusEvents: true,
		Upstream:     upstream.Options{BackoffMin: backoff, BackoffMax: backoff + 100*time.Millisecond},
	})
	const hb = 50 * time.Millisecond
	ts := newServer(t, Options{Heartbeat: hb}, Static(ch))
	c := ts.stream(t, "/stream", nil)
	id := publish(t, f, ch, websocket.MessageText, []byte("before"))
	c.expectData(t, "before")

	f.drop(t)
	down := c.next(t)
	if down.Name != "upstream" || down.ID != id {
		t.Fatalf("got %+v, want an upstream notice that leaves the resume id at %q", down, id)
	}
	var st struct {
		State     string `json:"state"`
		Error     string `json:"error"`
		RetryInMs *int64 `json:"retryInMs"`
	}
	if err := json.Unmarshal([]byte(down.Data), &st); err != nil {
		t.Fatalf("notice data %q: %v", down.Data, err)
	}
	if st.State != "down" || st.Error == "" || st.RetryInMs == nil ||
		*st.RetryInMs < backoff.Milliseconds() || *st.RetryInMs > (backoff+100*time.Millisecond).Milliseconds() {
		t.Errorf("down notice %s: want state down, an error and the backoff", down.Data)
	}
	beats := c.p.Comments()

	up := c.next(t)
	if up.Name != "upstream" || up.Data != `{"state":"up"}` || up.ID != id {
		t.Fatalf("got %+v, want {\"state\":\"up\"} with resume id %q", up, id)
	}
	// The upstream was away for at least the backoff, several heartbeats.
	if n := c.p.Comments() - beats; n < 2 {
		t.Errorf("%d heartbeats while the upstream was down for %v, want some every %v", n, backoff, hb)
	}

	id = publish(t, f, ch, websocket.MessageText, []byte("after"))
	if ev := c.expectData(t, "after")[0]; ev.ID != id {
		t.Errorf("id %q, want %q", ev.ID, id)
	}
	notices := 0
	for _, block := range strings.Split(c.raw.String(), "\n\n") {
		if strings.Contains(block, "event: upstream") {
			notices++
			if !strings.HasPrefix(block, "event: upstream\ndata: {") || strings.Count(block, "\n") != 1 {
				t.Errorf("notice on the wire: %q, want only an event and a data line", block)
			}
		}
	}
	if notices != 2 {
		t.Errorf("%d notices on the wire, want 2: %q", notices, c.raw.String())
	}
}

// bigPayload is event i of the slow-client tests: large, so that socket
// buffers fill after a few dozen events.
func bigPayload(i int) []byte {
	b := bytes.Repeat([]byte{'x'}, 64<<10)
	copy(b, fmt.Sprintf("%08d", i))
	return b
}

// paceTo publishes big payloads no further than window events ahead of
// what a fast client reported on progress, until stop reports true; then
// extra more, and no fewer than least in all. It returns how many it
// published.
func paceTo(t *testing.T, f *feed, progress <-chan int, window, least, limit, extra int, stop func() bool) int {
	t.Helper()
	up := f.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	seen, stopAt := 0, -1
	for i := 0; stopAt < 0 || i < stopAt; i++ {
		for seen < i-window {
			select {
			case seen = <-progress:
			case <-time.After(waitTimeout):
				t.Fatalf("the fast client is stuck at %d of %d events", seen, i)
			}
		}
		if err := up.Write(ctx, websocket.MessageText, bigPayload(i)); err != nil {
			t.Fatalf("upstream write: %v", err)
		}
		if stopAt < 0 && stop() {
			stopAt = max(i+1+extra, least)
		}
		if i == limit {
			t.Fatalf("published %d events of %d bytes and the slow client is still served", i, 64<<10)
		}
	}
	return stopAt
}

// dropSlow publishes big payloads, paced to the fast client, until the
// channel has dropped a slow client; then it waits until the fast client,
// reporting on progress and readErr, has read them all, and checks that
// the channel took them all in and serves the fast client alone. It
// returns how many it published.
func dropSlow(t *testing.T, f *feed, ch *bridge.Channel, progress <-chan int, readErr <-chan error) int {
	t.Helper()
	n := paceTo(t, f, progress, 4, 200, 2000, 50, func() bool { return ch.Info().SlowClients > 0 })
	for seen := 0; seen < n; {
		select {
		case seen = <-progress:
		case err := <-readErr:
			t.Fatalf("fast client: %v", err)
		case <-time.After(waitTimeout):
			t.Fatalf("the fast client got %d of %d events", seen, n)
		}
	}
	info := ch.Info()
	if info.EventsIn != uint64(n) || info.SlowClients != 1 || info.Clients() != 1 {
		t.Errorf("channel: %d events in, %d slow, %d clients; want %d, 1, 1", info.EventsIn, info.SlowClients, info.Clients(), n)
	}
	return n
}

// sseReader reads big payloads in order from c, reporting progress; it
// ends on the first error or mismatch.
func sseReader(c *sseClient, progress chan int) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			ev, err := c.p.Next()
			if err != nil {
				done <- err
				return
			}
			if ev.Data != string(bigPayload(i)) {
				done <- fmt.Errorf("event %d is %.8q…, want %.8q…", i, ev.Data, bigPayload(i))
				return
			}
			reportProgress(progress, i+1)
		}
	}()
	return done
}

// reportProgress replaces what progress holds with n.
func reportProgress(progress chan int, n int) {
	select {
	case <-progress:
	default:
	}
	progress <- n
}

func TestSSESlowClient(t *testing.T) {
	f := newFeed(t)
	const queue = 16
	ch := newChannel(t, f, bridge.Options{Queue: queue, Replay: 2 * queue})
	// The write timeout is longer than any wait here: the slow client must
	// be dropped for its queue, not for a write that timed out.
	ts := newServer(t, Options{Heartbeat: time.Minute, WriteTimeout: time.Minute}, Static(ch))

	// The slow client reads the response head and nothing after it.
	slow, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	fmt.Fprintf(slow, "GET /stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", ts.Listener.Addr())
	_ = slow.SetReadDeadline(time.Now().Add(waitTimeout))
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		var b [1]byte
		if _, err := slow.Read(b[:]); err != nil {
			t.Fatalf("slow client reading the head: %v (%q)", err, head)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		t.Fatalf("slow client's response: %q", head)
	}

	fast := ts.stream(t, "/stream", nil)
	progress := make(chan int, 1)
	readErr := sseReader(fast, progress)
	if n := clients(ch); n != 2 {
		t.Fatalf("%d clients, want 2", n)
	}

	n := dropSlow(t, f, ch, progress, readErr)

	// The server has closed the slow connection: draining it ends, short of
	// everything that was published.
	_ = slow.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := io.Copy(io.Discard, slow)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the slow connection is still open after %d bytes", got)
	}
	if got >= int64(n)<<16 {
		t.Errorf("the slow client got %d bytes, all %d events", got, n)
	}
	t.Logf("slow client dropped after %d bytes; %d events published", got, n)

	fast.resp.Body.Close()
	<-readErr
}
