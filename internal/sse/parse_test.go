package sse

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func equalEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// collect reads events from p until io.EOF.
func collect(t testing.TB, p *Parser) []Event {
	t.Helper()
	var evs []Event
	for {
		ev, err := p.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("Next: %v (after %q)", err, evs)
		}
		evs = append(evs, ev)
	}
}

// splitReader returns its bytes in two reads, the first of n bytes.
type splitReader struct {
	b []byte
	n int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(r.b)
	if r.n > 0 && r.n < n {
		n = r.n
	}
	n = copy(p, r.b[:n])
	r.b, r.n = r.b[n:], 0
	return n, nil
}

// readers returns the ways the parse tests feed a stream to the parser:
// whole, a byte at a time, in halves, with io.EOF on the last data, and
// split in two at every offset.
func readers(stream string) map[string]io.Reader {
	b := []byte(stream)
	rs := map[string]io.Reader{
		"whole":    bytes.NewReader(b),
		"onebyte":  iotest.OneByteReader(bytes.NewReader(b)),
		"half":     iotest.HalfReader(bytes.NewReader(b)),
		"dataerr":  iotest.DataErrReader(bytes.NewReader(b)),
		"halfbyte": iotest.HalfReader(iotest.OneByteReader(bytes.NewReader(b))),
	}
	for i := 1; i < len(b); i++ {
		rs["split"+strconv.Itoa(i)] = &splitReader{b: b, n: i}
	}
	return rs
}

type parseResult struct {
	events   []Event
	retry    time.Duration
	hasRetry bool
	comments int
}

// parseEvery parses stream through every reader of readers, checks that
// all give the same result, and returns it.
func parseEvery(t *testing.T, stream string) parseResult {
	t.Helper()
	var first *parseResult
	for name, r := range readers(stream) {
		p := NewParser(r)
		res := parseResult{events: collect(t, p), comments: p.Comments()}
		res.retry, res.hasRetry = p.Retry()
		if _, err := p.Next(); err != io.EOF {
			t.Fatalf("%s: Next after io.EOF = %v, want io.EOF again", name, err)
		}
		if first == nil {
			first = &res
			continue
		}
		if !equalEvents(res.events, first.events) || res.retry != first.retry ||
			res.hasRetry != first.hasRetry || res.comments != first.comments {
			t.Fatalf("reader %s parsed %q as %+v, another reader as %+v", name, stream, res, *first)
		}
	}
	return *first
}

func msg(id, data string) Event { return Event{ID: id, Name: "message", Data: data} }

func TestParser(t *testing.T) {
	long := strings.Repeat("0123456789", 1000)
	tests := []struct {
		name   string
		stream string
		want   []Event
	}{
		// The examples of the standard's section on event stream
		// interpretation.
		{"spec example empty data", "data\n\ndata\ndata\n\ndata:", []Event{msg("", ""), msg("", "\n")}},
		{"spec example space", "data:test\n\ndata: test\n\n", []Event{msg("", "test"), msg("", "test")}},
		{"spec example fields", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
			[]Event{msg("1", "first event"), msg("", "second event")}},
		{"spec example lines", "data: YHOO\ndata: +2\ndata: 10\n\n", []Event{msg("", "YHOO\n+2\n10")}},
		{"lf", "data: a\ndata: b\n\n", []Event{msg("", "a\nb")}},
		{"crlf", "data: a\r\ndata: b\r\n\r\n", []Event{msg("", "a\nb")}},
		{"cr", "data: a\rdata: b\r\r", []Event{msg("", "a\nb")}},
		{"cr then crlf", "data: a\r\r\ndata: b\r\n\r\n", []Event{msg("", "a"), msg("", "b")}},
		{"lf then cr", "data: a\n\rdata: b\n\n", []Event{msg("", "a"), msg("", "b")}},
		{"crlf crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []Event{msg("", "a"), msg("", "b")}},
		{"lf cr lf", "data: a\n\r\ndata: b\n\n", []Event{msg("", "a"), msg("", "b")}},
		{"cr lf lf", "data: a\r\n\ndata: b\n\n", []Event{msg("", "a"), msg("", "b")}},
		{"cr cr lf lf", "data: a\r\r\n\ndata: b\n\n", []Event{msg("", "a"), msg("", "b")}},
		{"bom", "\xef\xbb\xbfdata: x\n\n", []Event{msg("", "x")}},
		{"bom only once", "\uFEFF\uFEFFdata: x\n\ndata: y\n\n", []Event{msg("", "y")}},
		{"bom not at start", "data: a\n\n\uFEFFdata: b\n\n", []Event{msg("", "a")}},
		{"bom then blank line", "\uFEFF\ndata: a\n\n", []Event{msg("", "a")}},
		{"partial bom", "\xef\xbbdata: x\n\ndata: y\n\n", []Event{msg("", "y")}},
		{"bom alone", "\uFEFF", nil},
		{"short stream", "\xef\xbb", nil},
		{"empty stream", "", nil},
		{"blank lines only", "\n\r\n\r\n", nil},
		{"data no colon", "data\n\n", []Event{msg("", "")}},
		{"data no colon twice", "data\ndata\n\n", []Event{msg("", "\n")}},
		{"data colon no space", "data:x\n\n", []Event{msg("", "x")}},
		{"data empty value", "data:\n\n", []Event{msg("", "")}},
		{"two spaces keeps one", "data:  two spaces\n\n", []Event{msg("", " two spaces")}},
		{"only a space", "data: \n\n", []Event{msg("", "")}},
		{"tab not stripped", "data:\tx\n\n", []Event{msg("", "\tx")}},
		{"colon in value", "data: a: b\ndata::c\n\n", []Event{msg("", "a: b\n:c")}},
		{"nul in data", "data: a\x00b\n\n", []Event{msg("", "a\x00b")}},
		{"long line", "data: " + long + "\n\n", []Event{msg("", long)}},
		{"invalid utf-8", "data: \xff\xe2\x82A\xc0\xaf\xed\xa0\x80\n\n", []Event{msg("", "\uFFFD\uFFFDA\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD")}},
		{"truncated before lf", "data: \xe2\x82\ndata: \xf0\x9f\x98\r\n\n", []Event{msg("", "\uFFFD\n\uFFFD")}},
		{"invalid field name", "dat\xffa: x\ndata: y\n\n", []Event{msg("", "y")}},
		{"event type", "event: tick\ndata: a\n\ndata: b\n\n", []Event{{Name: "tick", Data: "a"}, msg("", "b")}},
		{"event type empty", "event:\ndata: a\n\n", []Event{msg("", "a")}},
		{"event type last wins", "event: a\nevent: b\ndata: x\n\n", []Event{{Name: "b", Data: "x"}}},
		{"event type after data", "data: x\nevent: late\n\n", []Event{{Name: "late", Data: "x"}}},
		{"event type spaces", "event:  sp \ndata: x\n\n", []Event{{Name: " sp ", Data: "x"}}},
		{"id", "id: 1\ndata: a\n\n", []Event{msg("1", "a")}},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\ndata: d\n\n",
			[]Event{msg("1", "a"), msg("1", "b"), msg("2", "c"), msg("2", "d")}},
		{"id reset by empty id", "id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\ndata: c\n\nid:\ndata: d\n\n",
			[]Event{msg("1", "a"), msg("", "b"), msg("2", "c"), msg("", "d")}},
		{"id with nul ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []Event{msg("1", "a"), msg("1", "b")}},
		{"id with nul alone ignored", "id: \x00\ndata: a\n\n", []Event{msg("", "a")}},
		{"id without data still set", "id: 5\n\ndata: x\n\n", []Event{msg("5", "x")}},
		{"id after data", "data: x\nid: 9\n\n", []Event{msg("9", "x")}},
		{"id any text", "id: a b:c\xff\n data: x\ndata: y\n\n", []Event{msg("a b:c\uFFFD", "y")}},
		{"no data not dispatched", "event: foo\nid: 3\n\ndata: x\n\n", []Event{msg("3", "x")}},
		{"event type reset without data", "event: foo\n\ndata: x\n\n", []Event{msg("", "x")}},
		{"unknown fields ignored", "foo: bar\nDATA: no\nData: no\n data: no\ndata : no\ndata\t: no\ndata: yes\n\n", []Event{msg("", "yes")}},
		{"unknown only", "foo: bar\n\n", nil},
		{"no blank line at end", "data: a\n\ndata: b\n", []Event{msg("", "a")}},
		{"unterminated line at end", "data: a\n\ndata: b", []Event{msg("", "a")}},
		{"unterminated cr line", "data: a\n\ndata: b\r", []Event{msg("", "a")}},
		{"blank line by cr at end", "data: a\n\r", []Event{msg("", "a")}},
		{"comment", ": hb\n\n:\n:x\ndata: a\n\n", []Event{msg("", "a")}},
		{"comment in event", "data: a\n: hb\ndata: b\n\n", []Event{msg("", "a\nb")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := parseEvery(t, tt.stream)
			if !equalEvents(res.events, tt.want) {
				t.Fatalf("parse %q\n got %q\nwant %q", tt.stream, res.events, tt.want)
			}
			all, err := ParseAll([]byte(tt.stream))
			if err != nil || !equalEvents(all, tt.want) {
				t.Fatalf("ParseAll(%q) = %q, %v; want %q", tt.stream, all, err, tt.want)
			}
		})
	}
}

func TestParserRetry(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   time.Duration
		ok     bool
	}{
		{"valid", "retry: 1500\n\n", 1500 * time.Millisecond, true},
		{"no space", "retry:250\n", 250 * time.Millisecond, true},
		{"zero", "retry: 0\n", 0, true},
		{"leading zeros", "retry: 0010\n", 10 * time.Millisecond, true},
		{"non-digit", "retry: 15x\n", 0, false},
		{"negative", "retry: -1\n", 0, false},
		{"plus", "retry: +1\n", 0, false},
		{"fraction", "retry: 1.5\n", 0, false},
		{"two spaces", "retry:  15\n", 0, false},
		{"trailing space", "retry: 15 \n", 0, false},
		{"empty", "retry:\n", 0, false},
		{"no colon", "retry\n", 0, false},
		{"arabic-indic digits", "retry: \u0661\n", 0, false},
		{"invalid keeps earlier", "retry: 100\nretry: x\n", 100 * time.Millisecond, true},
		{"last wins", "retry: 100\nretry: 200\n", 200 * time.Millisecond, true},
		{"huge clamps", "retry: 99999999999999999999999999\n", time.Duration(1<<63 - 1), true},
		{"unterminated", "retry: 100", 0, false},
		{"inside an event", "data: a\nretry: 300\n\n", 300 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := parseEvery(t, tt.stream)
			if res.retry != tt.want || res.hasRetry != tt.ok {
				t.Fatalf("Retry() after %q = %v, %v; want %v, %v", tt.stream, res.retry, res.hasRetry, tt.want, tt.ok)
			}
		})
	}
}

func TestParserComments(t *testing.T) {
	res := parseEvery(t, ": hb\n\n:\r\n:x\rdata: a\n: in event\n\n: unterminated")
	if res.comments != 4 {
		t.Fatalf("Comments() = %d, want 4", res.comments)
	}
	if want := []Event{msg("", "a")}; !equalEvents(res.events, want) {
		t.Fatalf("events = %q, want %q", res.events, want)
	}
}

func TestParserReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	p := NewParser(r)
	ev, err := p.Next()
	if err != nil || ev != msg("", "a") {
		t.Fatalf("Next = %q, %v; want %q", ev, err, msg("", "a"))
	}
	for range 2 {
		if ev, err := p.Next(); !errors.Is(err, boom) {
			t.Fatalf("Next = %q, %v; want error %v", ev, err, boom)
		}
	}
}

// A reader that keeps returning nothing must not hang the parser.
func TestParserNoProgress(t *testing.T) {
	p := NewParser(zeroReader{})
	if _, err := p.Next(); err != io.ErrNoProgress {
		t.Fatalf("Next = %v, want io.ErrNoProgress", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// chanReader returns the strings sent on its channel, one per Read, and
// io.EOF once the channel is closed.
type chanReader struct {
	ch   chan string
	rest string
}

func (r *chanReader) Read(p []byte) (int, error) {
	if r.rest == "" {
		s, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.rest = s
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// Next returns an event as soon as its blank line has arrived, without
// waiting for more input: a client sees events live.
func TestParserStreaming(t *testing.T) {
	for _, tt := range []struct{ name, eol string }{{"lf", "\n"}, {"cr", "\r"}, {"crlf", "\r\n"}} {
		t.Run(tt.name, func(t *testing.T) {
			r := &chanReader{ch: make(chan string, 10)}
			p := NewParser(r)
			next := func(want Event) {
				t.Helper()
				type result struct {
					ev  Event
					err error
				}
				res := make(chan result, 1)
				go func() {
					ev, err := p.Next()
					res <- result{ev, err}
				}()
				select {
				case got := <-res:
					if got.err != nil || got.ev != want {
						t.Fatalf("Next = %q, %v; want %q", got.ev, got.err, want)
					}
				case <-time.After(5 * time.Second):
					close(r.ch) // let the blocked Next end
					<-res
					t.Fatalf("Next did not return %q without more input", want)
				}
			}
			r.ch <- "\uFEFFretry: 10" + tt.eol
			r.ch <- "id: 1" + tt.eol + "data: a"
			r.ch <- tt.eol + tt.eol
			next(msg("1", "a"))
			if d, ok := p.Retry(); !ok || d != 10*time.Millisecond {
				t.Fatalf("Retry() = %v, %v; want 10ms", d, ok)
			}
			r.ch <- "data: b" + tt.eol
			r.ch <- tt.eol
			next(msg("1", "b"))
			r.ch <- "data: never dispatched" + tt.eol
			close(r.ch)
			if ev, err := p.Next(); err != io.EOF {
				t.Fatalf("Next at the end = %q, %v; want io.EOF", ev, err)
			}
		})
	}
}

func TestParserAllocs(t *testing.T) {
	var stream []byte
	stream = AppendRetry(stream, time.Second)
	for range 100 {
		stream = AppendEvent(stream, "", "trade", jsonPayload)
		stream = AppendComment(stream, "hb")
	}
	r := bytes.NewReader(stream)
	n := 0
	allocs := testing.AllocsPerRun(20, func() {
		r.Reset(stream)
		p := NewParser(r)
		for n = 0; ; n++ {
			if _, err := p.Next(); err != nil {
				break
			}
		}
	})
	if n != 100 {
		t.Fatalf("parsed %d events, want 100", n)
	}
	// One allocation per event, its Data string, and a few for the
	// Parser and its buffers as they grow to fit.
	if allocs > 100+10 {
		t.Fatalf("parsing 100 events: %v allocs, want at most 110", allocs)
	}
}

func BenchmarkParserNext(b *testing.B) {
	var stream []byte
	for i := range 1000 {
		stream = AppendEvent(stream, "1700000000000-"+strconv.Itoa(i), "trade", jsonPayload)
	}
	r := bytes.NewReader(stream)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		r.Reset(stream)
		p := NewParser(r)
		n := 0
		for {
			if _, err := p.Next(); err != nil {
				break
			}
			n++
		}
		if n != 1000 {
			b.Fatalf("parsed %d events, want 1000", n)
		}
	}
}
