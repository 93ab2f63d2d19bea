//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recorder is a streamHandler that writes down what it is given.
type recorder struct {
	events   []string // "type|id|data"
	comments int
	pings    []string
}

func (r *recorder) event(typ, id, data []byte) {
	r.events = append(r.events, fmt.Sprintf("%s|%s|%s", typ, id, data))
}
func (r *recorder) comment()            { r.comments++ }
func (r *recorder) ping(payload []byte) { r.pings = append(r.pings, string(payload)) }

// feedSplit feeds b to a new stream in pieces of n bytes.
func feedSplit(t *testing.T, ws bool, b []byte, n int) (*recorder, error) {
	t.Helper()
	s := &clientStream{ws: ws}
	r := &recorder{}
	for len(b) > 0 {
		k := min(n, len(b))
		piece := append([]byte(nil), b[:k]...) // the parser must not keep it
		if err := s.feed(piece, r); err != nil {
			return r, err
		}
		for i := range piece {
			piece[i] = '#'
		}
		b = b[k:]
	}
	return r, nil
}

func chunked(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	return b.String()
}

func TestSSEOverChunkedAnySplit(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
	body := chunked(
		"retry: 2000\n\n",
		"id: 1-0\ndata: {\"seq\":1}\n\n: heartbeat\n",
		"id: 1-1\nevent: tick\ndata: a\ndata: b\n\nid: 1-",
		"2\ndata: x\r\n\r\ndata:y\rdata: z\r\rdata: after\n\n",
	)
	want := []string{
		"|1-0|{\"seq\":1}",
		"tick|1-1|a\nb",
		"|1-2|x",
		"|1-2|y\nz",
		"|1-2|after",
	}
	for _, n := range []int{1, 2, 3, 7, 13, 64, 1 << 20} {
		r, err := feedSplit(t, false, []byte(head+body), n)
		if err != nil {
			t.Fatalf("pieces of %d: %v", n, err)
		}
		if strings.Join(r.events, "\n---\n") != strings.Join(want, "\n---\n") {
			t.Fatalf("pieces of %d: events\n%q\nwant\n%q", n, r.events, want)
		}
		if r.comments != 1 {
			t.Fatalf("pieces of %d: %d comments, want 1", n, r.comments)
		}
	}
}

func TestSSEEndAndErrors(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	_, err := feedSplit(t, false, []byte(head+chunked("data: a\n\n")+"0\r\n\r\n"), 5)
	if !errors.Is(err, errStreamEnd) {
		t.Errorf("last chunk: err %v, want errStreamEnd", err)
	}
	if _, err := feedSplit(t, false, []byte("HTTP/1.1 503 Service Unavailable\r\n\r\n"), 100); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err %v", err)
	}
	if _, err := feedSplit(t, false, []byte(head+"zz\r\n"), 100); err == nil {
		t.Error("a bad chunk size must fail")
	}
	// Not chunked: the body runs to the end of the connection.
	r, err := feedSplit(t, false, []byte("HTTP/1.1 200 OK\r\n\r\nid: 7\ndata: plain\n\n"), 4)
	if err != nil || len(r.events) != 1 || r.events[0] != "|7|plain" {
		t.Errorf("unchunked: %q, %v", r.events, err)
	}
}

func TestSSEKeepsIDAcrossReset(t *testing.T) {
	s := &clientStream{}
	r := &recorder{}
	in := "HTTP/1.1 200 OK\r\n\r\nid: 42-3\ndata: a\n\n"
	if err := s.feed([]byte(in), r); err != nil {
		t.Fatal(err)
	}
	s.reset()
	if string(s.sse.id) != "42-3" || s.headDone {
		t.Fatalf("after reset: id %q, head done %v", s.sse.id, s.headDone)
	}
	if err := s.feed([]byte("HTTP/1.1 200 OK\r\n\r\ndata: b\n\n"), r); err != nil {
		t.Fatal(err)
	}
	if r.events[1] != "|42-3|b" {
		t.Fatalf("second stream: %q", r.events)
	}
}

// wsFrame builds a server frame.
func wsFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func TestWebSocketFramesAnySplit(t *testing.T) {
	big := strings.Repeat("x", 300)
	huge := strings.Repeat("y", 70000)
	var in []byte
	in = append(in, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"...)
	in = append(in, wsFrame(true, 1, []byte(`{"seq":1}`))...)
	in = append(in, wsFrame(true, 9, []byte("hi"))...)
	in = append(in, wsFrame(true, 1, []byte(big))...)
	in = append(in, wsFrame(false, 2, []byte("ab"))...)
	in = append(in, wsFrame(true, 10, nil)...)
	in = append(in, wsFrame(true, 0, []byte("cd"))...)
	in = append(in, wsFrame(true, 1, []byte(huge[:maxHead-1]))...)
	for _, n := range []int{1, 3, 100, 1 << 20} {
		r, err := feedSplit(t, true, in, n)
		if err != nil {
			t.Fatalf("pieces of %d: %v", n, err)
		}
		want := []string{`||{"seq":1}`, "||" + big, "||abcd", "||" + huge[:maxHead-1]}
		if len(r.events) != len(want) {
			t.Fatalf("pieces of %d: %d events, want %d", n, len(r.events), len(want))
		}
		for i := range want {
			if r.events[i] != want[i] {
				t.Fatalf("pieces of %d: event %d is %.40q…, want %.40q…", n, i, r.events[i], want[i])
			}
		}
		if len(r.pings) != 1 || r.pings[0] != "hi" {
			t.Fatalf("pieces of %d: pings %q", n, r.pings)
		}
	}
	_, err := feedSplit(t, true, append([]byte("HTTP/1.1 101 OK\r\n\r\n"), wsFrame(true, 8, []byte{3, 233})...), 2)
	if !errors.Is(err, errStreamEnd) {
		t.Errorf("close frame: %v, want errStreamEnd", err)
	}
	if _, err := feedSplit(t, true, []byte("HTTP/1.1 200 OK\r\n\r\n"), 100); err == nil {
		t.Error("a WebSocket answered 200 must fail")
	}
}

func TestAppendPong(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	b := appendPong(nil, []byte("ping!"), mask)
	if b[0] != 0x8A || b[1] != 0x80|5 || string(b[2:6]) != string(mask[:]) {
		t.Fatalf("header % x", b[:6])
	}
	for i, c := range b[6:] {
		if c^mask[i%4] != "ping!"[i] {
			t.Fatalf("byte %d not masked", i)
		}
	}
}

func TestPayload(t *testing.T) {
	b := appendPayload(nil, 17, 123456, 1795281372041000000)
	if len(b) != payloadSize {
		t.Fatalf("payload is %d bytes, want %d", len(b), payloadSize)
	}
	seq, sent, ok := parsePayload(b)
	if !ok || seq != 123456 || sent != 1795281372041000000 {
		t.Fatalf("parsePayload = %d, %d, %v", seq, sent, ok)
	}
	if ch, ok := jsonInt(b, `"ch":`); !ok || ch != 17 {
		t.Fatalf("channel %d, %v", ch, ok)
	}
	if _, _, ok := parsePayload([]byte(`{"seq":"x"}`)); ok {
		t.Fatal("a payload without numbers must not parse")
	}
}

func TestRxTimestamp(t *testing.T) {
	oob := make([]byte, unix.CmsgSpace(16)+unix.CmsgSpace(4))
	// An unrelated message first, then the timestamp.
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(4))
	off := unix.CmsgSpace(4)
	h = (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	ts := (*unix.Timespec)(unsafe.Pointer(&oob[off+unix.SizeofCmsghdr]))
	ts.Sec, ts.Nsec = 1795281372, 41000123
	got, ok := rxTimestamp(oob)
	if !ok || got != 1795281372041000123 {
		t.Fatalf("rxTimestamp = %d, %v", got, ok)
	}
	if _, ok := rxTimestamp(nil); ok {
		t.Fatal("no control message, no timestamp")
	}
}
