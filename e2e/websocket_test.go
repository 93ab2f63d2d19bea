package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// wsRecorderJS defines wsrecord(name, path, protocol) in a page: it opens a
// WebSocket on path of the page's origin and keeps every message in
// streams[name].msgs, binary ones in base64.
const wsRecorderJS = `
window.wsrecord = function (name, path, protocol) {
  const r = { msgs: [], open: false, protocol: null, closed: null };
  const url = 'ws://' + location.host + path;
  const ws = protocol ? new WebSocket(url, protocol) : new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { r.open = true; r.protocol = ws.protocol; };
  ws.onclose = (e) => { r.closed = { code: e.code, reason: e.reason }; };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      r.msgs.push({ text: e.data });
    } else {
      r.msgs.push({ binary: btoa(String.fromCharCode(...new Uint8Array(e.data))) });
    }
  };
  r.ws = ws;
  streams[name] = r;
  return true;
};
true`

// wsMessage is one message a WebSocket recorder saw.
type wsMessage struct {
	Text   *string `json:"text"`
	Binary *string `json:"binary"` // base64
}

// TestWebSocketReceivesSameFrames: on the same channel path, a browser's
// WebSocket gets each upstream frame unchanged (text as text, binary as
// binary), a ws2sse.v1 WebSocket gets them with the ids and names an
// EventSource sees, and the EventSource gets them as SSE.
func TestWebSocketReceivesSameFrames(t *testing.T) {
	t.Parallel()
	p := newPage(t) // first: without a browser, the test stops here
	f := newFeed(t)
	s := startWS2SSE(t, feedChannel(f, "", "", `event_field = "type"`))
	up := f.conn(t, "/ws/feed")

	p.navigate(s.base + "/healthz")
	p.run(recorderJS)
	p.run(wsRecorderJS)
	p.run(`record("sse", "/feed", ["message", "trade"])`)
	p.run(`wsrecord("ws", "/feed")`)
	p.run(`wsrecord("v1", "/feed", "ws2sse.v1")`)
	p.waitFor("all three to open", `streams.sse.es.readyState === 1 && streams.ws.open && streams.v1.open`,
		`{sse: streams.sse.es.readyState, ws: streams.ws, v1: streams.v1}`, 0)
	if proto := eval[string](p, `streams.v1.protocol`); proto != "ws2sse.v1" {
		t.Errorf("negotiated subprotocol %q, want ws2sse.v1", proto)
	}
	s.waitChannel(t, "feed", "3 clients", func(c channelInfo) bool { return c.Clients == 3 })

	bin := []byte{0, 1, 2, 0xfe, 0xff, 'h', 'i'}
	frames := []struct {
		text   string
		binary []byte
		event  string // the SSE event name
		data   string // the SSE data
	}{
		{text: `{"type":"trade","px":101.5}`, event: "trade", data: `{"type":"trade","px":101.5}`},
		{text: "line one\r\nline two\rline three", event: "message", data: "line one\nline two\nline three"},
		{text: `{"n":2,"text":"ünïcödé ✓ 🎉"}`, event: "message", data: `{"n":2,"text":"ünïcödé ✓ 🎉"}`},
		{binary: bin, event: "message", data: base64.StdEncoding.EncodeToString(bin)},
		{text: "  leading spaces, not JSON", event: "message", data: "  leading spaces, not JSON"},
	}
	for _, fr := range frames {
		if fr.binary != nil {
			up.sendBinary(t, fr.binary)
		} else {
			up.send(t, fr.text)
		}
	}
	n := len(frames)
	p.waitFor(fmt.Sprintf("%d messages on each", n),
		fmt.Sprintf(`streams.sse.events.length >= %[1]d && streams.ws.msgs.length >= %[1]d && streams.v1.msgs.length >= %[1]d`, n),
		`{sse: streams.sse.events.length, ws: streams.ws.msgs, v1: streams.v1.msgs}`, 0)

	sse := recorded(p, "sse")
	ws := eval[[]wsMessage](p, `streams.ws.msgs`)
	v1 := eval[[]wsMessage](p, `streams.v1.msgs`)
	if len(sse) != n || len(ws) != n || len(v1) != n {
		t.Fatalf("got %d SSE events, %d WebSocket and %d ws2sse.v1 messages, want %d of each", len(sse), len(ws), len(v1), n)
	}
	for i, fr := range frames {
		// Plain WebSocket: the frame as it was.
		switch {
		case fr.binary != nil:
			if ws[i].Binary == nil || *ws[i].Binary != base64.StdEncoding.EncodeToString(fr.binary) {
				t.Errorf("frame %d: WebSocket got %+v, want the binary frame %x", i, ws[i], fr.binary)
			}
		case ws[i].Text == nil || *ws[i].Text != fr.text:
			t.Errorf("frame %d: WebSocket got %+v, want the text frame %q", i, ws[i], fr.text)
		}
		// EventSource.
		if sse[i].Type != fr.event || sse[i].Data != fr.data {
			t.Errorf("frame %d: EventSource got %s %q, want %s %q", i, sse[i].Type, sse[i].Data, fr.event, fr.data)
		}
		// ws2sse.v1: the same id and name as the EventSource got.
		if v1[i].Text == nil {
			t.Errorf("frame %d: ws2sse.v1 got a binary message, want JSON text", i)
			continue
		}
		var m struct {
			ID    string          `json:"id"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(*v1[i].Text), &m); err != nil {
			t.Errorf("frame %d: ws2sse.v1 message %q: %v", i, *v1[i].Text, err)
			continue
		}
		if m.ID != sse[i].ID || m.Event != fr.event {
			t.Errorf("frame %d: ws2sse.v1 id %q event %q, want id %q (as on SSE) event %q", i, m.ID, m.Event, sse[i].ID, fr.event)
		}
		var want any
		switch {
		case fr.binary != nil:
			want = base64.StdEncoding.EncodeToString(fr.binary)
		case json.Valid([]byte(fr.text)):
			_ = json.Unmarshal([]byte(fr.text), &want)
		default:
			want = fr.text
		}
		var got any
		if err := json.Unmarshal(m.Data, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("frame %d: ws2sse.v1 data %s, want %#v", i, m.Data, want)
		}
	}
}
