package downstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

// rawStream opens an SSE stream over a plain TCP connection and returns it
// once the response head is read. A positive rcvbuf fixes the socket's
// receive buffer, so that the server's socket fills up soon after the
// client stops reading.
func rawStream(t *testing.T, ts *testServer, path string, rcvbuf int) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err == nil {
				err = serr
			}
			return err
		}
	}
	conn, err := d.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, ts.Listener.Addr())
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("response: %q, %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("response head: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, br
}

// shardLoad returns how many streams of ch its shards are writing.
func shardLoad(s *Server, ch *bridge.Channel) int {
	s.fanMu.Lock()
	defer s.fanMu.Unlock()
	n := 0
	if f := s.fanouts[ch]; f != nil {
		for _, sh := range f.shards {
			n += int(sh.load.Load())
		}
	}
	return n
}

// A client that stops reading for a while, with less than its queue
// published meanwhile, fills its socket: the rest of what it is due is
// written from a goroutine of its own. Once it reads again it gets every
// event once and in order, and its shard takes it back once its socket
// has room.
func TestSSEFullSocketCatchesUp(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{Queue: 1024})
	ts := newServer(t, Options{Heartbeat: time.Minute, WriteTimeout: time.Minute}, Static(ch))

	conn, br := rawStream(t, ts, "/stream", 16<<10)
	p := sse.NewParser(br)
	wstest.Eventually(t, "the stream is written by a shard", func() bool { return shardLoad(ts.s, ch) == 1 })

	// 64 KiB events, more than the kernel's largest send buffer (4 MiB by
	// default) and the client's 16 KiB can hold together.
	const paused = 160
	for i := range paused {
		f.send(t, websocket.MessageText, bigPayload(i))
	}
	wstest.Eventually(t, "the stream has a goroutine of its own", func() bool { return ts.s.spills.Load() > 0 })

	_ = conn.SetReadDeadline(time.Now().Add(streamTimeout))
	var last string
	for i := range paused + 2 {
		switch i {
		case paused:
			// The backlog is read: the next event finds a socket with room,
			// and the stream goes back to its shard after writing it.
			f.send(t, websocket.MessageText, bigPayload(i))
		case paused + 1:
			wstest.Eventually(t, "the stream is back in its shard", func() bool { return shardLoad(ts.s, ch) == 1 })
			f.send(t, websocket.MessageText, bigPayload(i))
		}
		ev, err := p.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if ev.Data != string(bigPayload(i)) {
			t.Fatalf("event %d is %.8q…, want %.8q…", i, ev.Data, bigPayload(i))
		}
		if last != "" && !idLess(t, last, ev.ID) {
			t.Fatalf("event %d has id %s after %s", i, ev.ID, last)
		}
		last = ev.ID
	}
	// A shard counts what it wrote once its pass is over.
	wstest.Eventually(t, fmt.Sprintf("%d events out", paused+2), func() bool {
		return ch.Info().EventsOut[bridge.TransportSSE] == paused+2
	})
	if info := ch.Info(); info.SlowClients != 0 || info.Clients() != 1 {
		t.Errorf("channel: %d slow, %d clients; want 0, 1", info.SlowClients, info.Clients())
	}
}

// A shard encodes once the events that streams in step read, and gives
// every stream exactly what it read: here two streams whose reads start
// with the same event and have the same length, but not the same events,
// since upstream notices reach only the streams that were there for them.
func TestShardEncodesWhatEachStreamRead(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{StatusEvents: true})
	ids := publishN(t, f, ch, "e", 2)
	subscribe := func() *session {
		sub, err := ch.Subscribe(bridge.SubscribeOptions{LastEventID: ids[0]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		return &session{sub: sub}
	}
	a := subscribe()
	f.drop(t) // an upstream down and up notice, for a only
	f.conn(t)
	wstest.Eventually(t, "the upstream back up", func() bool { return ch.Info().State.State == upstream.StateUp })
	publishN(t, f, ch, "x", 1)
	b := subscribe()

	sh := newShard(nil, nil)
	read := func(ss *session) []*bridge.Event {
		events, err := ss.sub.Read(nil)
		if err != nil {
			t.Fatal(err)
		}
		return events
	}
	wire := func(events []*bridge.Event) string {
		var w []byte
		for _, e := range events {
			w = append(w, e.SSE...)
		}
		return string(w)
	}
	evA := read(a)
	if out, _ := sh.encode(a, evA); string(out) != wire(evA) {
		t.Fatalf("a was given\n%s\nfor\n%s", out, wire(evA))
	}
	publishN(t, f, ch, "late", len(evA)-2)
	evB := read(b)
	if evB[0] != evA[0] || len(evB) != len(evA) {
		t.Fatalf("b read %d events from %s; the test wants %d from %s", len(evB), evB[0].ID, len(evA), evA[0].ID)
	}
	if out, _ := sh.encode(b, evB); string(out) != wire(evB) {
		t.Errorf("b was given\n%s\nfor\n%s", out, wire(evB))
	}
}

// counter counts the events a raw stream receives, reading into one buffer
// so that it allocates nothing itself.
type counter struct {
	n    atomic.Int64
	want int64 // events due to it so far
	done chan error
}

func countEvents(conn net.Conn, br *bufio.Reader) *counter {
	c := &counter{want: 1, done: make(chan error, 1)} // the retry: field ends with a blank line too
	go func() {
		// What bufio read ahead comes first, then the connection.
		r := io.MultiReader(bytes.NewReader(must(br.Peek(br.Buffered()))), conn)
		buf := make([]byte, 64<<10)
		prev := byte(0)
		for {
			n, err := r.Read(buf)
			for _, b := range buf[:n] {
				if b == '\n' && prev == '\n' {
					c.n.Add(1)
				}
				prev = b
			}
			if err != nil {
				c.done <- err
				return
			}
		}
	}()
	return c
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Streams are spread over the channel's shards, every one gets every event
// in full, and a delivery allocates nothing: the allocations per event are
// the same for many streams as for one (the event, its encodings, and the
// upstream's read of the frame).
func TestSSEShardsDeliverWithoutAllocating(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute, WriteTimeout: time.Minute}, Static(ch))
	payload := bytes.Repeat([]byte("y"), 200)

	var counters []*counter
	connect := func(n int) {
		for range n {
			conn, br := rawStream(t, ts, "/stream", 0)
			counters = append(counters, countEvents(conn, br))
		}
		wstest.Eventually(t, "every stream is written by a shard", func() bool { return shardLoad(ts.s, ch) == len(counters) })
	}
	step := func() {
		f.send(t, websocket.MessageText, payload)
		for _, c := range counters {
			c.want++
			for c.n.Load() < c.want {
				select {
				case err := <-c.done:
					t.Fatalf("stream ended: %v", err)
				default:
					runtime.Gosched()
				}
			}
		}
	}
	measure := func() float64 {
		step() // warm up the buffers
		return testing.AllocsPerRun(50, step)
	}

	connect(1)
	one := measure()
	many := 2*shardFill + 44
	connect(many - 1)
	if runtime.GOMAXPROCS(0) > 1 {
		ts.s.fanMu.Lock()
		f := ts.s.fanouts[ch]
		for i, sh := range f.shards[:2] {
			if n := sh.load.Load(); n < shardFill {
				t.Errorf("shard %d writes %d streams, want at least %d", i, n, shardFill)
			}
		}
		ts.s.fanMu.Unlock()
	}
	before := ch.Info().EventsOut[bridge.TransportSSE]
	all := measure()
	t.Logf("allocations per event: %.1f with one stream, %.1f with %d", one, all, many)
	if perDelivery := (all - one) / float64(many-1); perDelivery > 0.01 {
		t.Errorf("%.3f allocations per delivery (%.1f per event for %d streams, %.1f for one); want none",
			perDelivery, all, many, one)
	}
	// Every stream was counted, once a shard's pass ended: measure takes
	// 52 steps (one to warm up, and AllocsPerRun's own first run).
	want := before + 52*uint64(many)
	wstest.Eventually(t, fmt.Sprintf("%d events out", want), func() bool { return ch.Info().EventsOut[bridge.TransportSSE] == want })
}

// A client that sent something after its request still gets the last words
// of its stream at shutdown, and then a clean end: what it sent is read
// before the connection is closed, which would otherwise reset it.
func TestSSEShutdownAfterClientSentBytes(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute, ShutdownRetry: time.Second}, Static(ch))
	conn, br := rawStream(t, ts, "/stream", 0)
	for range 2 { // the first retry: field, and the blank line after it
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	wstest.Eventually(t, "the stream is written by a shard", func() bool { return shardLoad(ts.s, ch) == 1 })
	if _, err := conn.Write([]byte("unexpected bytes from the client\r\n")); err != nil {
		t.Fatal(err)
	}
	ts.s.Shutdown()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("after %q: %v; want a clean end", rest, err)
	}
	if !bytes.HasPrefix(rest, []byte("retry: ")) {
		t.Errorf("the stream ended with %q, want a retry: field", rest)
	}
}

// A client that resumes with a backlog gets it in one write, as does any
// client that fell behind; then one write per event as they come.
func TestSSEBacklogInOneWrite(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	ids := publishN(t, f, ch, "e", 50)
	c := ts.stream(t, "/stream", http.Header{"Last-Event-ID": {ids[0]}})
	var want []string
	for i := 1; i < 50; i++ {
		want = append(want, fmt.Sprintf("e%d", i))
	}
	c.expectData(t, want...)
	wstest.Eventually(t, "the backlog counted", func() bool { return ch.Info().EventsOut[bridge.TransportSSE] == 49 })
	if w := ch.Info().Writes[bridge.TransportSSE]; w != 1 {
		t.Errorf("the backlog of 49 events took %d writes, want 1", w)
	}
	f.text(t, "live")
	c.expectData(t, "live")
	wstest.Eventually(t, "the live event counted", func() bool { return ch.Info().EventsOut[bridge.TransportSSE] == 50 })
	if w := ch.Info().Writes[bridge.TransportSSE]; w != 2 {
		t.Errorf("%d writes after one more event, want 2", w)
	}
}

// An SSE stream whose socket filled up, stuck in a write from its own
// goroutine at shutdown, ends when Close expires the write: Wait returns
// long before the write timeout.
func TestSSECloseCutsAStuckWrite(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{Queue: 1024})
	ts := newServer(t, Options{Heartbeat: time.Minute, WriteTimeout: time.Minute}, Static(ch))
	rawStream(t, ts, "/stream", 16<<10) // never reads after the head
	wstest.Eventually(t, "the stream is written by a shard", func() bool { return shardLoad(ts.s, ch) == 1 })
	for i := range 160 {
		f.send(t, websocket.MessageText, bigPayload(i))
	}
	wstest.Eventually(t, "the stream has a goroutine of its own", func() bool { return ts.s.spills.Load() > 0 })
	ts.s.Shutdown()
	ts.s.Close()
	ts.waitStreams(t)
	if n := clients(ch); n != 0 {
		t.Errorf("%d clients after Close, want none", n)
	}
}
