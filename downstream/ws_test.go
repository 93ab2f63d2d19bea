package downstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/wstest"
	"github.com/ws2sse/ws2sse/upstream"
)

var v1Opts = &websocket.DialOptions{Subprotocols: []string{SubprotocolV1}}

// frame is one upstream frame.
type frame struct {
	binary bool
	data   string
}

func (fr frame) typ() websocket.MessageType {
	if fr.binary {
		return websocket.MessageBinary
	}
	return websocket.MessageText
}

// TestWSAndSSE reads the same upstream frames over SSE and WebSocket at
// once: the WebSocket carries them byte for byte, the SSE stream carries
// the same payloads (binary ones base64-encoded), in the same order.
func TestWSAndSSE(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{EventField: "type"})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	sc := ts.stream(t, "/stream", nil)
	wc := ts.ws(t, "", nil)
	if p := wc.Subprotocol(); p != "" {
		t.Errorf("subprotocol %q without asking for one", p)
	}

	frames := []frame{
		{false, "hello"},
		{false, "{ \"type\" : \"trade\", \"px\": [1.50, 2e3] }\n"},
		{true, "\x00\x01\xfe\xff"},
		{false, "multi\nline\n"},
		{false, "héllo 🎉"},
		{true, ""},
		{false, `{"type":"quote"}`},
	}
	for _, fr := range frames {
		f.send(t, fr.typ(), []byte(fr.data))
	}
	prev := ""
	for i, fr := range frames {
		typ, b := readWS(t, wc)
		if typ != fr.typ() || string(b) != fr.data {
			t.Errorf("WebSocket message %d: %v %q, want %v %q", i, typ, b, fr.typ(), fr.data)
		}
		ev := sc.next(t)
		got := ev.Data
		if fr.binary {
			dec, err := base64.StdEncoding.DecodeString(got)
			if err != nil {
				t.Errorf("SSE event %d: %q is not base64", i, got)
			}
			got = string(dec)
		}
		if got != fr.data {
			t.Errorf("SSE event %d: %q, want %q", i, got, fr.data)
		}
		if prev != "" && !idLess(t, prev, ev.ID) {
			t.Errorf("SSE event %d: id %q after %q", i, ev.ID, prev)
		}
		prev = ev.ID
	}
	inf := ch.Info()
	if inf.LastEventID != prev {
		t.Errorf("last id %q, SSE client's %q", inf.LastEventID, prev)
	}
	// Each client is counted under its transport, with what it was sent.
	if got := inf.Stats.Clients; got[bridge.TransportSSE] != 1 || got[bridge.TransportWebSocket] != 1 {
		t.Errorf("clients per transport %v, want one each", got)
	}
	wstest.Eventually(t, "the events out to be counted", func() bool {
		out := ch.Info().EventsOut
		return out[bridge.TransportSSE] == uint64(len(frames)) && out[bridge.TransportWebSocket] == uint64(len(frames))
	})
}

// v1Msg is a ws2sse.v1 message.
type v1Msg struct {
	ID    *string         `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func readV1(t *testing.T, c *websocket.Conn) v1Msg {
	t.Helper()
	typ, b := readWS(t, c)
	if typ != websocket.MessageText {
		t.Fatalf("ws2sse.v1 message of type %v: %q", typ, b)
	}
	var m v1Msg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("ws2sse.v1 message %q: %v", b, err)
	}
	return m
}

// expectV1 reads one ws2sse.v1 message and checks it; id "" means none.
func expectV1(t *testing.T, c *websocket.Conn, id, event, data string) {
	t.Helper()
	m := readV1(t, c)
	var compact bytes.Buffer
	if err := json.Compact(&compact, m.Data); err != nil {
		t.Fatalf("data %q: %v", m.Data, err)
	}
	gotID := "<none>"
	if m.ID != nil {
		gotID = *m.ID
	}
	wantID := id
	if id == "" {
		wantID = "<none>"
	}
	if gotID != wantID || m.Event != event || compact.String() != data {
		t.Fatalf("got id %s event %q data %s; want id %s event %q data %s", gotID, m.Event, compact.String(), wantID, event, data)
	}
}

func TestWSResume(t *testing.T) {
	frames := []frame{{false, "a"}, {false, `{"n": 1}`}, {true, "\x01\x02\x03"}, {false, "d\ne"}}
	// setup publishes frames on a fresh channel and returns their ids.
	setup := func(t *testing.T, opts bridge.Options) (*feed, *bridge.Channel, *testServer, []string) {
		f := newFeed(t)
		ch := newChannel(t, f, opts)
		ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
		var ids []string
		for _, fr := range frames {
			ids = append(ids, publish(t, f, ch, fr.typ(), []byte(fr.data)))
		}
		return f, ch, ts, ids
	}
	expectRaw := func(t *testing.T, c *websocket.Conn, frames ...frame) {
		t.Helper()
		for i, fr := range frames {
			typ, b := readWS(t, c)
			if typ != fr.typ() || string(b) != fr.data {
				t.Fatalf("message %d: %v %q, want %v %q", i, typ, b, fr.typ(), fr.data)
			}
		}
	}

	t.Run("raw", func(t *testing.T) {
		f, _, ts, ids := setup(t, bridge.Options{})
		c := ts.ws(t, "?lastEventId="+ids[0], nil)
		expectRaw(t, c, frames[1:]...)
		f.text(t, "live")
		expectRaw(t, c, frame{false, "live"})
	})
	t.Run("raw unknown id", func(t *testing.T) {
		f, _, ts, _ := setup(t, bridge.Options{})
		c := ts.ws(t, "?lastEventId=nope", nil)
		// A raw client cannot be told of the gap; it gets the buffer.
		expectRaw(t, c, frames...)
		f.text(t, "live")
		expectRaw(t, c, frame{false, "live"})
	})
	t.Run("v1", func(t *testing.T) {
		f, ch, ts, ids := setup(t, bridge.Options{})
		c := ts.ws(t, "?lastEventId="+ids[0], v1Opts)
		if p := c.Subprotocol(); p != SubprotocolV1 {
			t.Fatalf("subprotocol %q, want %s", p, SubprotocolV1)
		}
		expectV1(t, c, ids[1], "message", `{"n":1}`)
		expectV1(t, c, ids[2], "message", `"AQID"`)
		expectV1(t, c, ids[3], "message", `"d\ne"`)
		id := publish(t, f, ch, websocket.MessageText, []byte(`["live"]`))
		expectV1(t, c, id, "message", `["live"]`)
	})
	t.Run("v1 unknown id", func(t *testing.T) {
		_, _, ts, ids := setup(t, bridge.Options{})
		c := ts.ws(t, "?lastEventId=nope", v1Opts)
		expectV1(t, c, "", "gap", fmt.Sprintf(`{"lastEventId":"nope","next":%q}`, ids[0]))
		expectV1(t, c, ids[0], "message", `"a"`)
		expectV1(t, c, ids[1], "message", `{"n":1}`)
	})
	t.Run("v1 replay on connect", func(t *testing.T) {
		_, _, ts, ids := setup(t, bridge.Options{ReplayOnConnect: 1, EventField: "n"})
		c := ts.ws(t, "", v1Opts)
		expectV1(t, c, ids[3], "message", `"d\ne"`)
	})
}

// TestWSUpstreamStatus: ws2sse.v1 clients get the upstream notices; raw
// clients, written for the upstream's own frames, do not.
func TestWSUpstreamStatus(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{StatusEvents: true, Upstream: upstream.Options{
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	}})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	raw := ts.ws(t, "", nil)
	v1 := ts.ws(t, "", v1Opts)

	f.drop(t)
	m := readV1(t, v1)
	var st struct {
		State     string `json:"state"`
		Error     string `json:"error"`
		RetryInMs *int64 `json:"retryInMs"`
	}
	if err := json.Unmarshal(m.Data, &st); err != nil || m.ID != nil || m.Event != "upstream" ||
		st.State != "down" || st.Error == "" || st.RetryInMs == nil {
		t.Fatalf("got %+v (%s), want an upstream down notice without id", m, m.Data)
	}
	expectV1(t, v1, "", "upstream", `{"state":"up"}`)

	id := publish(t, f, ch, websocket.MessageText, []byte("after"))
	expectV1(t, v1, id, "message", `"after"`)
	expectText(t, raw, "after")
}

func TestWSReadOnly(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
	send := func(t *testing.T, c *websocket.Conn, typ websocket.MessageType) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := c.Write(ctx, typ, []byte(`{"op":"subscribe"}`)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("idle", func(t *testing.T) {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			c := ts.ws(t, "", nil)
			send(t, c, typ)
			if code := expectClose(t, c); code != websocket.StatusPolicyViolation {
				t.Errorf("%v message: closed with %v, want 1008", typ, code)
			}
		}
	})
	// While events flow, the server is often writing when the message
	// comes: the client must still be told why it is closed.
	t.Run("busy", func(t *testing.T) {
		// A queue long enough that no client here falls a queue behind,
		// however loaded the machine.
		f := newFeed(t)
		ch := newChannel(t, f, bridge.Options{Name: "busy", Queue: 1 << 16})
		ts := newServer(t, Options{Heartbeat: time.Minute}, Static(ch))
		up := f.conn(t)
		ctx, cancel := context.WithCancel(context.Background())
		published := make(chan struct{})
		go func() {
			defer close(published)
			// Bursts of small events, at most some ten thousand a second.
			for {
				for range 10 {
					if up.Write(ctx, websocket.MessageText, bytes.Repeat([]byte{'x'}, 64)) != nil {
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
		defer func() {
			cancel()
			<-published
		}()
		for i := range 10 {
			c := ts.ws(t, "", nil)
			readWS(t, c)
			send(t, c, websocket.MessageText)
			if code := expectClose(t, c); code != websocket.StatusPolicyViolation {
				t.Errorf("client %d: closed with %v, want 1008", i, code)
			}
		}
	})
	wstest.Eventually(t, "no clients", func() bool { return clients(ch) == 0 })
}

func TestWSOrigin(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	ts := newServer(t, Options{Heartbeat: time.Minute, CORSOrigins: []string{"https://app.example.com"}}, Static(ch))

	_, resp, err := ts.dialWS(t, "", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, want 403", err)
	}
	if n := ch.Info().Subscriptions; n != 0 {
		t.Errorf("a refused client made %d subscriptions", n)
	}

	var conns []*websocket.Conn
	for _, origin := range []string{"https://app.example.com", ts.URL, ""} {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		c, _, err := ts.dialWS(t, "", &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("origin %q: %v", origin, err)
		}
		conns = append(conns, c)
	}
	f.text(t, "hi")
	for _, c := range conns {
		expectText(t, c, "hi")
	}
}

// wsReader reads big payloads in order from c, reporting progress; it ends
// on the first error or mismatch.
func wsReader(c *websocket.Conn, progress chan int) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		for i := 0; ; i++ {
			_, b, err := c.Read(ctx)
			if err != nil {
				done <- err
				return
			}
			if !bytes.Equal(b, bigPayload(i)) {
				done <- fmt.Errorf("message %d is %.8q…, want %.8q…", i, b, bigPayload(i))
				return
			}
			reportProgress(progress, i+1)
		}
	}()
	return done
}

func TestWSSlowClient(t *testing.T) {
	f := newFeed(t)
	const queue = 16
	ch := newChannel(t, f, bridge.Options{Queue: queue, Replay: 2 * queue})
	ts := newServer(t, Options{Heartbeat: time.Minute, WriteTimeout: time.Minute}, Static(ch))
	slow := ts.ws(t, "", nil) // never reads until it is dropped
	fast := ts.ws(t, "", nil)
	progress := make(chan int, 1)
	readErr := wsReader(fast, progress)

	n := dropSlow(t, f, ch, progress, readErr)

	// The slow client finds its connection closed after what the socket
	// buffers held.
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, _, err := slow.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the slow connection is still open after %d messages", got)
			}
			break
		}
		got++
	}
	if got >= n {
		t.Errorf("the slow client got all %d messages", got)
	}
	t.Logf("slow client dropped after %d messages; %d published", got, n)

	fast.CloseNow()
	<-readErr
}

func TestWSUnansweredPings(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	const hb, wt = 50 * time.Millisecond, 200 * time.Millisecond
	logs := &wstest.Buffer{}
	ts := serve(t, New(Options{Heartbeat: hb, WriteTimeout: wt, Logger: wstest.Logger(t, logs)}), Static(ch))
	start := time.Now()
	// A coder/websocket client answers pings only while it reads.
	deaf := ts.ws(t, "", nil)
	var pings atomic.Int64
	alive := ts.ws(t, "", &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		pings.Add(1)
		return true
	}})
	msgs := make(chan string, 1)
	readErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
		defer cancel()
		for {
			_, b, err := alive.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			msgs <- string(b)
		}
	}()

	wstest.Eventually(t, "the deaf client to be dropped", func() bool { return clients(ch) == 1 })
	if took := time.Since(start); took < hb+wt {
		t.Errorf("dropped after %v, before a ping could time out", took)
	}
	// The client that answers is pinged all along and stays.
	n := pings.Load()
	wstest.Eventually(t, "more pings", func() bool { return pings.Load() >= n+3 })
	f.text(t, "still here")
	select {
	case m := <-msgs:
		if m != "still here" {
			t.Errorf("got %q", m)
		}
	case err := <-readErr:
		t.Fatalf("the responsive client was dropped: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("the responsive client got nothing")
	}
	if n := clients(ch); n != 1 {
		t.Errorf("%d clients, want the responsive one", n)
	}
	expectClose(t, deaf)
	wstest.Eventually(t, "the session log line", func() bool { return strings.Contains(logs.String(), `"reason":"no pong"`) })

	alive.CloseNow()
	<-readErr
}

// A WebSocket client that stops reading is dropped once a write has taken
// longer than the write timeout, long before it falls a queue behind.
func TestWSWriteTimeout(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{Queue: 512, Replay: 16})
	logs := &wstest.Buffer{}
	ts := serve(t, New(Options{Heartbeat: time.Minute, WriteTimeout: 200 * time.Millisecond, Logger: wstest.Logger(t, logs)}), Static(ch))
	deaf := ts.ws(t, "", nil) // never reads
	defer deaf.CloseNow()
	wstest.Eventually(t, "the client to subscribe", func() bool { return clients(ch) == 1 })
	// 64 KiB events fill its socket within a few dozen; the pace keeps the
	// queue far from full meanwhile.
	for i := 0; clients(ch) > 0; i++ {
		if i == 400 {
			t.Fatalf("published %d events of 64 KiB and the client is still served", i)
		}
		f.send(t, websocket.MessageText, bigPayload(i))
		time.Sleep(5 * time.Millisecond)
	}
	wstest.Eventually(t, "the session log line", func() bool { return strings.Contains(logs.String(), `"reason":"write failed"`) })
	if n := ch.Info().SlowClients; n != 0 {
		t.Errorf("%d clients dropped as slow; want the write timeout to drop it", n)
	}
}

// Shutdown ends a WebSocket stream with a close handshake; a client that
// never answers it keeps its stream until Close drops the connection.
func TestWSCloseDropsUnansweredHandshakes(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{})
	logs := &wstest.Buffer{}
	ts := serve(t, New(Options{Heartbeat: time.Minute, Logger: wstest.Logger(t, logs)}), Static(ch))
	deaf := ts.ws(t, "", nil) // never reads, so never answers the close
	defer deaf.CloseNow()
	wstest.Eventually(t, "the client to subscribe", func() bool { return clients(ch) == 1 })

	ts.s.Shutdown()
	waited := ts.waitAsync()
	select {
	case <-waited:
		t.Fatal("Wait returned while the close handshake was still open")
	case <-time.After(100 * time.Millisecond):
	}
	ts.s.Close()
	select {
	case <-waited:
	case <-time.After(waitTimeout):
		t.Fatal("Wait did not return after Close")
	}
	if !strings.Contains(logs.String(), `"reason":"shutdown"`) {
		t.Errorf("no session line with reason shutdown in:\n%s", logs)
	}
}

// A WebSocket stream stuck in a write at shutdown ends when Close drops
// it, and its session is logged as ended by the shutdown.
func TestWSCloseCutsAStuckWrite(t *testing.T) {
	f := newFeed(t)
	ch := newChannel(t, f, bridge.Options{Queue: 512, Replay: 16})
	logs := &wstest.Buffer{}
	ts := serve(t, New(Options{Heartbeat: time.Minute, WriteTimeout: time.Minute, Logger: wstest.Logger(t, logs)}), Static(ch))
	deaf := ts.ws(t, "", nil) // never reads
	defer deaf.CloseNow()
	wstest.Eventually(t, "the client to subscribe", func() bool { return clients(ch) == 1 })
	// Far more than the socket buffers hold: the stream's write blocks.
	for i := range 200 {
		f.send(t, websocket.MessageText, bigPayload(i))
	}
	ts.s.Shutdown()
	ts.s.Close()
	ts.waitStreams(t)
	if !strings.Contains(logs.String(), `"reason":"shutdown"`) {
		t.Errorf("no session line with reason shutdown in:\n%s", logs)
	}
}
