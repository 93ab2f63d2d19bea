package sse

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// encodeCases are payloads with what AppendEvent must write for them and
// what a WHATWG parser must then deliver as the event's data. The fuzz test
// uses the payloads as seeds.
var encodeCases = []struct {
	name    string
	payload string
	wire    string // AppendEvent(nil, "", "", payload)
	want    string // the data a browser gets
}{
	{"plain", "hello", "data: hello\n\n", "hello"},
	{"json", `{"a":1,"b":[true,null]}`, "data: {\"a\":1,\"b\":[true,null]}\n\n", `{"a":1,"b":[true,null]}`},
	{"lf", "a\nb\nc", "data: a\ndata: b\ndata: c\n\n", "a\nb\nc"},
	{"cr", "a\rb", "data: a\ndata: b\n\n", "a\nb"},
	{"crlf", "a\r\nb", "data: a\ndata: b\n\n", "a\nb"},
	{"mixed", "a\r\nb\rc\nd\n\re", "data: a\ndata: b\ndata: c\ndata: d\ndata:\ndata: e\n\n", "a\nb\nc\nd\n\ne"},
	{"cr cr", "a\r\rb", "data: a\ndata:\ndata: b\n\n", "a\n\nb"},
	{"lf cr", "a\n\rb", "data: a\ndata:\ndata: b\n\n", "a\n\nb"},
	{"trailing lf", "a\n", "data: a\ndata:\n\n", "a\n"},
	{"trailing crlf", "a\r\n", "data: a\ndata:\n\n", "a\n"},
	{"trailing cr", "a\r", "data: a\ndata:\n\n", "a\n"},
	{"only lf", "\n", "data:\ndata:\n\n", "\n"},
	{"leading space", " x", "data:  x\n\n", " x"},
	{"only spaces", "  ", "data:   \n\n", "  "},
	{"colon", "a: b", "data: a: b\n\n", "a: b"},
	{"comment-looking", ":comment", "data: :comment\n\n", ":comment"},
	{"comment-looking line", "x\n: hb", "data: x\ndata: : hb\n\n", "x\n: hb"},
	{"field injection", "x\n\nid: 666\nevent: evil\nretry: 1\ndata: y",
		"data: x\ndata:\ndata: id: 666\ndata: event: evil\ndata: retry: 1\ndata: data: y\n\n",
		"x\n\nid: 666\nevent: evil\nretry: 1\ndata: y"},
	{"empty", "", "data:\n\n", ""},
	{"empty lines", "a\n\n\nb", "data: a\ndata:\ndata:\ndata: b\n\n", "a\n\n\nb"},
	{"nul", "a\x00b", "data: a\x00b\n\n", "a\x00b"},
	{"bom", "\uFEFFx", "data: \uFEFFx\n\n", "\uFEFFx"},
	{"lone ff", "a\xffb", "data: a\uFFFDb\n\n", "a\uFFFDb"},
	{"lone continuation", "\x80", "data: \uFFFD\n\n", "\uFFFD"},
	{"truncated 3-byte", "\xe2\x82A", "data: \uFFFDA\n\n", "\uFFFDA"},
	{"truncated at end", "x\xe2\x82", "data: x\uFFFD\n\n", "x\uFFFD"},
	{"truncated before lf", "\xe2\x82\nA", "data: \uFFFD\ndata: A\n\n", "\uFFFD\nA"},
	{"truncated 4-byte", "\xf0\x9f\x98", "data: \uFFFD\n\n", "\uFFFD"},
	{"overlong", "\xc0\xaf", "data: \uFFFD\uFFFD\n\n", "\uFFFD\uFFFD"},
	{"overlong 3-byte", "\xe0\x80\xaf", "data: \uFFFD\uFFFD\uFFFD\n\n", "\uFFFD\uFFFD\uFFFD"},
	{"surrogate", "\xed\xa0\x80", "data: \uFFFD\uFFFD\uFFFD\n\n", "\uFFFD\uFFFD\uFFFD"},
	{"above max", "\xf4\x90\x80\x80", "data: \uFFFD\uFFFD\uFFFD\uFFFD\n\n", "\uFFFD\uFFFD\uFFFD\uFFFD"},
	{"f5", "\xf5x", "data: \uFFFDx\n\n", "\uFFFDx"},
	{"replacement char", "\uFFFD", "data: \uFFFD\n\n", "\uFFFD"},
	{"emoji", "😀 🎉", "data: 😀 🎉\n\n", "😀 🎉"},
	{"cjk", "漢字\nかな", "data: 漢字\ndata: かな\n\n", "漢字\nかな"},
	{"nel and line separator", "a\u0085b\u2028c", "data: a\u0085b\u2028c\n\n", "a\u0085b\u2028c"},
}

func TestAppendEventData(t *testing.T) {
	for _, tc := range encodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendEvent(nil, "", "", []byte(tc.payload))
			if string(got) != tc.wire {
				t.Fatalf("AppendEvent(%q)\n got %q\nwant %q", tc.payload, got, tc.wire)
			}
			if exp := expectedData([]byte(tc.payload)); exp != tc.want {
				t.Fatalf("test oracle: expectedData(%q) = %q, table says %q", tc.payload, exp, tc.want)
			}
			evs, err := ParseAll(got)
			if err != nil {
				t.Fatal(err)
			}
			want := []Event{{Name: "message", Data: tc.want}}
			if !equalEvents(evs, want) {
				t.Fatalf("ParseAll(%q)\n got %q\nwant %q", got, evs, want)
			}
		})
	}
}

func TestAppendEventFields(t *testing.T) {
	long := strings.Repeat("9", MaxIDLen)
	tests := []struct {
		name     string
		id, evt  string
		wire     string
		wantID   string
		wantName string
	}{
		{"id and name", "1700000000000-0", "tick", "id: 1700000000000-0\nevent: tick\ndata: x\n\n", "1700000000000-0", "tick"},
		{"no id", "", "tick", "event: tick\ndata: x\n\n", "", "tick"},
		{"no name", "7", "", "id: 7\ndata: x\n\n", "7", "message"},
		{"message name omitted", "7", "message", "id: 7\ndata: x\n\n", "7", "message"},
		{"longest id", long, "", "id: " + long + "\ndata: x\n\n", long, "message"},
		{"id too long", long + "9", "", "data: x\n\n", "", "message"},
		{"id with space", "1 2", "", "data: x\n\n", "", "message"},
		{"id with lf", "1\nretry: 1", "", "data: x\n\n", "", "message"},
		{"id with nul", "1\x002", "", "data: x\n\n", "", "message"},
		{"name with lf", "", "a\nb", "data: x\n\n", "", "message"},
		{"name with cr", "", "a\rdata: y", "data: x\n\n", "", "message"},
		{"name with nul", "", "a\x00", "data: x\n\n", "", "message"},
		{"name invalid utf-8", "", "a\xff", "data: x\n\n", "", "message"},
		{"name too long", "", strings.Repeat("n", 65), "data: x\n\n", "", "message"},
		{"name with leading space", "", " spaced", "event:  spaced\ndata: x\n\n", "", " spaced"},
		{"unicode name", "", "日本", "event: 日本\ndata: x\n\n", "", "日本"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendEvent(nil, tt.id, tt.evt, []byte("x"))
			if string(got) != tt.wire {
				t.Fatalf("AppendEvent(%q, %q)\n got %q\nwant %q", tt.id, tt.evt, got, tt.wire)
			}
			evs, err := ParseAll(got)
			if err != nil {
				t.Fatal(err)
			}
			want := []Event{{ID: tt.wantID, Name: tt.wantName, Data: "x"}}
			if !equalEvents(evs, want) {
				t.Fatalf("ParseAll(%q) = %q, want %q", got, evs, want)
			}
		})
	}
}

func TestAppendEventAppends(t *testing.T) {
	dst := []byte("retry: 1\n\n")
	got := AppendEvent(dst, "2", "", []byte("b"))
	if want := "retry: 1\n\nid: 2\ndata: b\n\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestAppendRetry(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{2 * time.Second, "retry: 2000\n\n"},
		{1500 * time.Millisecond, "retry: 1500\n\n"},
		{0, "retry: 0\n\n"},
	}
	for _, tt := range tests {
		if got := AppendRetry(nil, tt.d); string(got) != tt.want {
			t.Errorf("AppendRetry(%v) = %q, want %q", tt.d, got, tt.want)
		}
		p := NewParser(bytes.NewReader(AppendRetry(nil, tt.d)))
		if ev, err := p.Next(); err == nil {
			t.Errorf("AppendRetry(%v) dispatched %q", tt.d, ev)
		}
		if got, ok := p.Retry(); !ok || got != tt.d {
			t.Errorf("parsed AppendRetry(%v): Retry() = %v, %v", tt.d, got, ok)
		}
	}
}

func TestAppendComment(t *testing.T) {
	if got, want := string(AppendComment(nil, "hb")), ": hb\n\n"; got != want {
		t.Fatalf("AppendComment = %q, want %q", got, want)
	}
	if got, want := string(AppendComment(nil, "")), ": \n\n"; got != want {
		t.Fatalf("AppendComment empty = %q, want %q", got, want)
	}
	// A heartbeat between two events neither dispatches anything nor
	// disturbs the events around it.
	var b []byte
	b = AppendEvent(b, "1", "tick", []byte("a"))
	b = AppendComment(b, "hb")
	b = AppendComment(b, "hb")
	b = AppendEvent(b, "", "", []byte("b"))
	p := NewParser(bytes.NewReader(b))
	evs := collect(t, p)
	want := []Event{{ID: "1", Name: "tick", Data: "a"}, {ID: "1", Name: "message", Data: "b"}}
	if !equalEvents(evs, want) {
		t.Fatalf("events = %q, want %q", evs, want)
	}
	if got := p.Comments(); got != 2 {
		t.Fatalf("Comments() = %d, want 2", got)
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"0", "1700000000000-0", "a.b_c-D", strings.Repeat("z", MaxIDLen)} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false, want true", id)
		}
	}
	for _, id := range []string{"", " ", "1 2", "a:b", "a/b", "é", "1\n", strings.Repeat("z", MaxIDLen+1)} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true, want false", id)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"message", "tick", "a b", "a:b", " x", "日本", strings.Repeat("n", 64)} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"", "a\nb", "a\rb", "\x00", "\x7f", "\t", "\xff", "\uFFFD", strings.Repeat("n", 65)} {
		if ValidName(name) {
			t.Errorf("ValidName(%q) = true, want false", name)
		}
	}
}

// jsonPayload is a 256-byte JSON message, the typical upstream payload.
var jsonPayload = func() []byte {
	b := []byte(`{"type":"trade","symbol":"BTC-USD","price":"64123.45","size":"0.0125","side":"buy","ts":1700000000123,"seq":987654321,"venue":"example","tags":["spot","maker"],"note":"`)
	for len(b) < 254 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}()

func TestAppendEventAllocs(t *testing.T) {
	if len(jsonPayload) != 256 {
		t.Fatalf("payload is %d bytes, want 256", len(jsonPayload))
	}
	invalid := append([]byte("a\xffb\r\nc\xe2\x82"), jsonPayload...)
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendEvent(dst[:0], "1700000000000-42", "trade", jsonPayload)
		dst = AppendEvent(dst, "1700000000000-43", "message", invalid)
		dst = AppendComment(dst, "hb")
		dst = AppendRetry(dst, 2*time.Second)
	})
	if allocs != 0 {
		t.Fatalf("AppendEvent into a preallocated buffer: %v allocs, want 0", allocs)
	}
	if !bytes.HasPrefix(dst, []byte("id: 1700000000000-42\nevent: trade\ndata: {\"type\"")) {
		t.Fatalf("unexpected output %q", dst)
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(jsonPayload)))
	for b.Loop() {
		dst = AppendEvent(dst[:0], "1700000000000-42", "trade", jsonPayload)
	}
}

func BenchmarkAppendEventInvalidUTF8(b *testing.B) {
	payload := bytes.Clone(jsonPayload)
	payload[100] = 0xff
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = AppendEvent(dst[:0], "1700000000000-42", "trade", payload)
	}
}
