package bridge

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ws2sse/ws2sse/internal/sse"
)

func TestEventName(t *testing.T) {
	name64 := strings.Repeat("n", 64)
	name65 := strings.Repeat("n", 65)
	tests := []struct {
		desc  string
		field string
		frame string
		want  string
	}{
		{"no field", "", `{"type":"tick"}`, "message"},
		{"top-level member", "type", `{"type":"tick","v":1}`, "tick"},
		{"whitespace before the object", "type", " \r\n\t{\"type\":\"tick\"}", "tick"},
		{"member name with a slash is not a pointer", "a/b", `{"a/b":"slashed","a":{"b":"deep"}}`, "slashed"},
		{"pointer", "/a/b", `{"a":{"b":"deep"},"b":"shallow"}`, "deep"},
		{"pointer to a top-level member", "/type", `{"type":"tick"}`, "tick"},
		{"pointer ~1 is a slash", "/a~1b", `{"a/b":"slash","a":{"b":"wrong"}}`, "slash"},
		{"pointer ~0 is a tilde", "/a~0b", `{"a~b":"tilde"}`, "tilde"},
		{"pointer ~01 is ~1, not a slash", "/~01", `{"~1":"right","/":"wrong"}`, "right"},
		{"pointer into an array", "/items/1/kind", `{"items":[{"kind":"a"},{"kind":"b"}]}`, "b"},
		{"pointer array index with a leading zero", "/items/01/kind", `{"items":[{"kind":"a"},{"kind":"b"}]}`, "message"},
		{"pointer array index past the end", "/items/2/kind", `{"items":[{"kind":"a"},{"kind":"b"}]}`, "message"},
		{"pointer array index -", "/items/-/kind", `{"items":[{"kind":"a"}]}`, "message"},
		{"pointer through a string", "/a/b", `{"a":"flat"}`, "message"},
		{"missing member", "type", `{"kind":"tick"}`, "message"},
		{"missing pointer member", "/a/c", `{"a":{"b":"deep"}}`, "message"},
		{"number", "type", `{"type":1}`, "message"},
		{"object", "type", `{"type":{"name":"tick"}}`, "message"},
		{"null", "type", `{"type":null}`, "message"},
		{"empty string", "type", `{"type":""}`, "message"},
		{"non-JSON frame", "type", `type=tick`, "message"},
		{"broken JSON object", "type", `{"type":"tick"`, "message"},
		{"JSON array frame", "type", `[{"type":"tick"}]`, "message"},
		{"escaped name", "type", `{"type":"caf\u00e9"}`, "café"},
		{"name with a newline", "type", `{"type":"a\nb"}`, "message"},
		{"name with a carriage return", "type", `{"type":"a\rb"}`, "message"},
		{"name with invalid UTF-8", "type", "{\"type\":\"a\xffb\"}", "message"},
		{"64-byte name", "type", `{"type":"` + name64 + `"}`, name64},
		{"65-byte name", "type", `{"type":"` + name65 + `"}`, "message"},
		{"reserved gap", "type", `{"type":"gap"}`, "message"},
		{"reserved upstream", "type", `{"type":"upstream"}`, "message"},
		{"reserved overload", "type", `{"type":"overload"}`, "message"},
		{"reserved names are case-sensitive", "type", `{"type":"Gap"}`, "Gap"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := eventName([]byte(tt.frame), tt.field); got != tt.want {
				t.Errorf("eventName(%q, %q) = %q, want %q", tt.frame, tt.field, got, tt.want)
			}
		})
	}
}

func TestNextKey(t *testing.T) {
	const ms = 1_700_000_000_000
	at := time.UnixMilli
	tests := []struct {
		desc string
		last eventKey
		now  time.Time
		want string
	}{
		{"first event", eventKey{}, at(ms), "1700000000000-0"},
		{"same millisecond", eventKey{ms, 0}, at(ms), "1700000000000-1"},
		{"same millisecond again", eventKey{ms, 41}, at(ms).Add(999 * time.Microsecond), "1700000000000-42"},
		{"next millisecond", eventKey{ms, 7}, at(ms + 1), "1700000000001-0"},
		{"clock steps back", eventKey{ms, 3}, at(ms - 60_000), "1700000000000-4"},
		{"clock before the epoch", eventKey{ms, 3}, at(-5), "1700000000000-4"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := nextKey(tt.last, tt.now)
			if got.String() != tt.want {
				t.Errorf("nextKey(%v, %v) = %v, want %s", tt.last, tt.now, got, tt.want)
			}
			if !tt.last.less(got) {
				t.Errorf("nextKey(%v, …) = %v, not after it", tt.last, got)
			}
			if back, ok := parseKey(got.String()); !ok || back != got {
				t.Errorf("parseKey(%q) = %v, %v; want %v", got.String(), back, ok, got)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	max40 := "18446744073709551615-1844674407370955161" // 40 bytes
	tests := []struct {
		id   string
		want eventKey
		ok   bool
	}{
		{"1700000000000-0", eventKey{1_700_000_000_000, 0}, true},
		{"1700000000000-12", eventKey{1_700_000_000_000, 12}, true},
		{"0-0", eventKey{0, 0}, true},
		{max40, eventKey{18446744073709551615, 1844674407370955161}, true},
		{max40 + "5", eventKey{}, false}, // 41 bytes
		{strings.Repeat("1", 20) + "-" + strings.Repeat("1", 20), eventKey{}, false},
		{strings.Repeat("9", 100) + "-1", eventKey{}, false},
		{"18446744073709551616-0", eventKey{}, false}, // overflows
		{"01-1", eventKey{}, false},
		{"1-01", eventKey{}, false},
		{"00-0", eventKey{}, false},
		{"1-", eventKey{}, false},
		{"-1", eventKey{}, false},
		{"-", eventKey{}, false},
		{"", eventKey{}, false},
		{"12", eventKey{}, false},
		{"1-2-3", eventKey{}, false},
		{"a-1", eventKey{}, false},
		{"1-b", eventKey{}, false},
		{"1.5-0", eventKey{}, false},
		{"+1-0", eventKey{}, false},
		{" 1-0", eventKey{}, false},
		{"1-0 ", eventKey{}, false},
		{"１-0", eventKey{}, false}, // a fullwidth digit
	}
	for _, tt := range tests {
		got, ok := parseKey(tt.id)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("parseKey(%q) = %v, %v; want %v, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
}

func TestEncodeJSON(t *testing.T) {
	tests := []struct {
		desc   string
		id     string
		name   string
		data   string
		binary bool
		want   string
	}{
		{"JSON object", "17-0", "tick", `{"p":1.5,"s":"x"}`, false, `{"id":"17-0","event":"tick","data":{"p":1.5,"s":"x"}}`},
		{"JSON with surrounding space", "17-1", "message", " \n{\"p\":1}\r\n", false, `{"id":"17-1","event":"message","data":{"p":1}}`},
		{"JSON number", "17-2", "message", `42`, false, `{"id":"17-2","event":"message","data":42}`},
		{"JSON string", "17-3", "message", `"hi"`, false, `{"id":"17-3","event":"message","data":"hi"}`},
		{"plain text", "17-4", "message", `hello "world"` + "\n<b>", false, `{"id":"17-4","event":"message","data":"hello \"world\"\n\u003cb\u003e"}`},
		{"text with invalid UTF-8", "17-5", "message", "a\xffb", false, `{"id":"17-5","event":"message","data":"a\ufffdb"}`},
		{"JSON with invalid UTF-8", "17-6", "message", "{\"s\":\"a\xffb\"}", false, "{\"id\":\"17-6\",\"event\":\"message\",\"data\":{\"s\":\"a\uFFFDb\"}}"},
		{"binary", "17-7", "message", "\x00\x01\x02\xff", true, `{"id":"17-7","event":"message","data":"AAEC/w=="}`},
		{"binary that looks like JSON", "17-8", "message", `{}`, true, `{"id":"17-8","event":"message","data":"e30="}`},
		{"empty text", "17-9", "message", "", false, `{"id":"17-9","event":"message","data":""}`},
		{"notice", "", "upstream", `{"state":"up"}`, false, `{"event":"upstream","data":{"state":"up"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := encodeJSON(tt.id, tt.name, []byte(tt.data), tt.binary)
			if string(got) != tt.want {
				t.Errorf("encodeJSON = %s\nwant          %s", got, tt.want)
			}
			// A WebSocket text frame must be UTF-8, and a client parses it.
			if !utf8.Valid(got) || !json.Valid(got) {
				t.Errorf("encodeJSON = %q: not valid UTF-8 JSON", got)
			}
			var m struct {
				ID    *string         `json:"id"`
				Event string          `json:"event"`
				Data  json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatal(err)
			}
			if (m.ID == nil) != (tt.id == "") || m.ID != nil && *m.ID != tt.id || m.Event != tt.name {
				t.Errorf("decoded id %v, event %q; want %q, %q", m.ID, m.Event, tt.id, tt.name)
			}
		})
	}
}

func TestEncodeSSE(t *testing.T) {
	tests := []struct {
		desc       string
		name       string
		data       string
		binary     bool
		dropBinary bool
		want       []sse.Event // what an EventSource dispatches
	}{
		{"message", "message", `{"a":1}`, false, false, []sse.Event{{ID: "5-1", Name: "message", Data: `{"a":1}`}}},
		{"named", "tick", `{"type":"tick"}`, false, false, []sse.Event{{ID: "5-1", Name: "tick", Data: `{"type":"tick"}`}}},
		{"lines", "message", "a\nb\r\nc\rd", false, false, []sse.Event{{ID: "5-1", Name: "message", Data: "a\nb\nc\nd"}}},
		{"injection", "message", "x\n\nid: 99\nevent: gap\ndata: evil\n\n", false, false,
			[]sse.Event{{ID: "5-1", Name: "message", Data: "x\n\nid: 99\nevent: gap\ndata: evil\n\n"}}},
		{"invalid UTF-8", "message", "a\xffb", false, false, []sse.Event{{ID: "5-1", Name: "message", Data: "a\uFFFDb"}}},
		{"empty", "message", "", false, false, []sse.Event{{ID: "5-1", Name: "message", Data: ""}}},
		{"binary", "message", "\x00\x01\x02\xff", true, false, []sse.Event{{ID: "5-1", Name: "message", Data: "AAEC/w=="}}},
		{"binary dropped", "message", "\x00\x01", true, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			b := encodeSSE("5-1", tt.name, []byte(tt.data), tt.binary, tt.dropBinary)
			if tt.want == nil {
				if b != nil {
					t.Fatalf("encodeSSE = %q, want nil", b)
				}
				return
			}
			got, err := sse.ParseAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) || got[0] != tt.want[0] {
				t.Errorf("encodeSSE = %q\nparses as %+v\nwant      %+v", b, got, tt.want)
			}
		})
	}
}
