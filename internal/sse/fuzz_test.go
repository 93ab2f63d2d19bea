package sse

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// expectedData is what a browser must receive as the data of an event
// whose payload was p: p decoded by the WHATWG UTF-8 decoder, with CRLF and
// CR turned into LF. It shares nothing with the encoder.
func expectedData(p []byte) string {
	s := string(appendDecoded(nil, p))
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// checkWire checks the framing of one encoded event without a parser: valid
// UTF-8, no CR, only id/event/data lines, and one blank line, the last.
func checkWire(t *testing.T, wire []byte, wantLines int) {
	t.Helper()
	if !utf8.Valid(wire) {
		t.Fatalf("encoded event is not valid UTF-8: %q", wire)
	}
	if bytes.IndexByte(wire, '\r') >= 0 {
		t.Fatalf("encoded event has a CR: %q", wire)
	}
	if !bytes.HasSuffix(wire, []byte("\n\n")) {
		t.Fatalf("encoded event does not end with a blank line: %q", wire)
	}
	dataLines := 0
	for _, line := range strings.Split(string(wire[:len(wire)-2]), "\n") {
		switch {
		case strings.HasPrefix(line, "data:"):
			dataLines++
		case strings.HasPrefix(line, "id: "), strings.HasPrefix(line, "event: "):
			if dataLines > 0 {
				t.Fatalf("field line %q after data lines: %q", line, wire)
			}
		default:
			t.Fatalf("unexpected line %q in %q", line, wire)
		}
	}
	if dataLines != wantLines {
		t.Fatalf("%d data lines, want %d: %q", dataLines, wantLines, wire)
	}
}

// wantFields returns the id and name a parser must report for an event
// encoded with id and name, after an event that left prevID in effect: an
// id or name that AppendEvent leaves out changes nothing.
func wantFields(prevID, id, name string) (string, string) {
	if ValidID(id) {
		prevID = id
	}
	if !ValidName(name) {
		name = "message"
	}
	return prevID, name
}

// FuzzEncodeParse encodes two arbitrary events back to back, between a
// retry field, an earlier event and heartbeats, and checks that a WHATWG
// parser gets back exactly those events and nothing of one in the other.
func FuzzEncodeParse(f *testing.F) {
	for _, tc := range encodeCases {
		f.Add("", "", []byte(tc.payload), "", "", []byte("next"))
		f.Add("1700000000000-1", "tick", []byte(tc.payload), "", "", []byte(tc.payload))
		f.Add("7", "message", []byte("first"), "8", "other", []byte(tc.payload))
	}
	f.Add("bad id", "bad\nname", []byte("x"), "", "", []byte(""))
	f.Add("", "", []byte(""), "", "", []byte(""))
	f.Add("a.b_c-D", "名前", []byte("\r\n\r\n"), "x", "\x00", []byte("\xef\xbb\xbf"))

	f.Fuzz(func(t *testing.T, id, name string, data []byte, id2, name2 string, data2 []byte) {
		const retry = 1500 * time.Millisecond
		one := AppendEvent(nil, id, name, data)
		two := AppendEvent(nil, id2, name2, data2)
		want1, want2 := expectedData(data), expectedData(data2)
		checkWire(t, one, strings.Count(want1, "\n")+1)
		checkWire(t, two, strings.Count(want2, "\n")+1)

		var stream []byte
		stream = AppendRetry(stream, retry)
		stream = AppendEvent(stream, "p0", "", []byte("seed"))
		stream = append(stream, one...)
		stream = AppendComment(stream, "hb")
		stream = append(stream, two...)

		// The encoder writes at least one data line, so every event is
		// dispatched, an empty payload as an event with empty data.
		id1, name1 := wantFields("p0", id, name)
		id2, name2 = wantFields(id1, id2, name2)
		want := []Event{
			{ID: "p0", Name: "message", Data: "seed"},
			{ID: id1, Name: name1, Data: want1},
			{ID: id2, Name: name2, Data: want2},
		}
		for _, p := range []*Parser{
			NewParser(bytes.NewReader(stream)),
			NewParser(iotest.OneByteReader(bytes.NewReader(stream))),
		} {
			got := collect(t, p)
			if !equalEvents(got, want) {
				t.Fatalf("stream %q\nparsed %q\n  want %q", stream, got, want)
			}
			if d, ok := p.Retry(); !ok || d != retry {
				t.Fatalf("Retry() = %v, %v; want %v", d, ok, retry)
			}
			if n := p.Comments(); n != 1 {
				t.Fatalf("Comments() = %d, want 1", n)
			}
		}
	})
}

// FuzzParse feeds arbitrary streams to the Parser whole and in small reads
// and compares with refParse, a direct transcription of the standard.
func FuzzParse(f *testing.F) {
	for _, tc := range encodeCases {
		f.Add([]byte(tc.wire))
		f.Add([]byte("id: 1\r\nevent: e\r" + tc.payload + "\r\n\r\n"))
	}
	for _, s := range []string{
		"\uFEFFdata: x\r\n\r\n", "\xef\xbb", "data\n\ndata:\ndata\r\r", "retry: 12\nretry: x\n",
		"id: 1\x00\ndata: a\n\nid\n\n:c\ndata: b\n", "event: e\n\ndata: x\r\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		want, wantRetry, wantComments := refParse(stream)
		for _, r := range []*Parser{
			NewParser(bytes.NewReader(stream)),
			NewParser(iotest.OneByteReader(bytes.NewReader(stream))),
			NewParser(&splitReader{b: stream, n: len(stream) / 2}),
		} {
			got := collect(t, r)
			if !equalEvents(got, want) {
				t.Fatalf("stream %q\nparsed %q\n  want %q", stream, got, want)
			}
			if d, ok := r.Retry(); ok != (wantRetry >= 0) || ok && d != wantRetry {
				t.Fatalf("Retry() = %v, %v; want %v (-1: none)", d, ok, wantRetry)
			}
			if n := r.Comments(); n != wantComments {
				t.Fatalf("Comments() = %d, want %d", n, wantComments)
			}
		}
	})
}

// refParse interprets a whole stream as the standard describes it, step by
// step and without regard for speed. retry is -1 when no valid retry field
// was seen.
func refParse(stream []byte) (events []Event, retry time.Duration, comments int) {
	// "UTF-8 decode": drop one BOM, then decode.
	stream = bytes.TrimPrefix(stream, []byte{0xef, 0xbb, 0xbf})
	text := string(appendDecoded(nil, stream))
	retry = -1
	var data, eventType, lastID string
	for {
		// A line is only a line when CRLF, LF or CR ends it; whatever is
		// left at the end of the stream is discarded.
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			return events, retry, comments
		}
		line := text[:i]
		if strings.HasPrefix(text[i:], "\r\n") {
			text = text[i+2:]
		} else {
			text = text[i+1:]
		}
		switch {
		case line == "":
			if data == "" {
				eventType = ""
				continue
			}
			data = strings.TrimSuffix(data, "\n")
			ev := Event{ID: lastID, Name: "message", Data: data}
			if eventType != "" {
				ev.Name = eventType
			}
			events = append(events, ev)
			data, eventType = "", ""
		case line[0] == ':':
			comments++
		default:
			field, value, found := strings.Cut(line, ":")
			if found {
				value = strings.TrimPrefix(value, " ")
			}
			switch field {
			case "event":
				eventType = value
			case "data":
				data += value + "\n"
			case "id":
				if !strings.Contains(value, "\x00") {
					lastID = value
				}
			case "retry":
				if value == "" || strings.Trim(value, "0123456789") != "" {
					break
				}
				// A value too large for a Duration becomes the largest.
				retry = math.MaxInt64
				ms, err := strconv.ParseInt(value, 10, 64)
				if err == nil && ms <= math.MaxInt64/int64(time.Millisecond) {
					retry = time.Duration(ms) * time.Millisecond
				}
			}
		}
	}
}
