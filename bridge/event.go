package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ws2sse/ws2sse/internal/sse"
)

// Event is one item of a channel's stream. It is immutable once published
// and shared by the replay buffer and every subscriber.
type Event struct {
	ID     string    // "<unix-ms>-<seq>"; empty for a notice
	Name   string    // the SSE event type; "message" when the frame names none
	Data   []byte    // the upstream frame exactly as received
	Binary bool      // Data came in a binary frame
	Time   time.Time // when the frame arrived
	SSE    []byte    // the event's text/event-stream bytes; nil when SSE clients skip it
	JSON   []byte    // the event as one ws2sse.v1 WebSocket message: {"id":…,"event":…,"data":…}

	key    eventKey // ID as numbers; a notice carries the key of the event before it
	notice bool     // an "upstream" status notice: no id, never replayed
}

// Notice reports whether e is a status notice rather than an upstream frame.
func (e *Event) Notice() bool { return e.notice }

// eventKey orders event ids: milliseconds since the epoch, then a sequence
// number within the millisecond.
type eventKey struct{ ms, seq uint64 }

func (k eventKey) less(o eventKey) bool {
	return k.ms < o.ms || k.ms == o.ms && k.seq < o.seq
}

func (k eventKey) String() string {
	var b [41]byte
	out := strconv.AppendUint(b[:0], k.ms, 10)
	out = append(out, '-')
	out = strconv.AppendUint(out, k.seq, 10)
	return string(out)
}

// nextKey returns the key after last for an event at now. Keys strictly
// increase even when the wall clock steps back.
func nextKey(last eventKey, now time.Time) eventKey {
	ms := uint64(max(now.UnixMilli(), 0))
	if ms <= last.ms {
		return eventKey{last.ms, last.seq + 1}
	}
	return eventKey{ms, 0}
}

// parseKey parses an id of the form "<ms>-<seq>". Anything else, including
// ids with leading zeros that this process would never issue, is refused.
func parseKey(id string) (eventKey, bool) {
	if len(id) > sse.MaxIDLen {
		return eventKey{}, false
	}
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return eventKey{}, false
	}
	ms, ok1 := parseUint(a)
	seq, ok2 := parseUint(b)
	return eventKey{ms, seq}, ok1 && ok2
}

func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// reservedNames are event types ws2sse uses for its own notices; an upstream
// frame may not impersonate them.
var reservedNames = map[string]bool{"gap": true, "upstream": true, "overload": true}

// eventName returns the event type named by field in a JSON frame: a
// top-level member name, or a JSON pointer ("/a/b", "/items/0/type"). A
// frame that is not a JSON object, a missing or non-string value, or a value
// that is unsafe or reserved gives "message".
func eventName(data []byte, field string) string {
	if field == "" {
		return "message"
	}
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 || data[0] != '{' {
		return "message"
	}
	var tokens []string
	if strings.HasPrefix(field, "/") {
		tokens = strings.Split(field[1:], "/")
		for i, t := range tokens {
			tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
		}
	} else {
		tokens = []string{field}
	}
	raw := json.RawMessage(data)
	for _, t := range tokens {
		var ok bool
		if raw, ok = jsonChild(raw, t); !ok {
			return "message"
		}
	}
	var name string
	if json.Unmarshal(raw, &name) != nil || !sse.ValidName(name) || reservedNames[name] {
		return "message"
	}
	return name
}

// jsonChild returns what the JSON pointer reference token t selects in a
// JSON value: an object's member, or an array's element when t is an index
// ("0", "12"; no leading zeros).
func jsonChild(raw json.RawMessage, t string) (json.RawMessage, bool) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) > 0 && raw[0] == '[' {
		i, ok := parseUint(t)
		var arr []json.RawMessage
		if !ok || json.Unmarshal(raw, &arr) != nil || i >= uint64(len(arr)) {
			return nil, false
		}
		return arr[i], true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil, false
	}
	v, ok := obj[t]
	return v, ok
}

// encodeSSE returns the SSE bytes of an upstream frame, or nil when binary
// frames are dropped on SSE.
func encodeSSE(id, name string, data []byte, binary, dropBinary bool) []byte {
	if binary {
		if dropBinary {
			return nil
		}
		data = base64.StdEncoding.AppendEncode(nil, data)
	}
	buf := make([]byte, 0, len(data)+len(id)+len(name)+32)
	return sse.AppendEvent(buf, id, name, data)
}

// encodeJSON returns the ws2sse.v1 form of an event: data is the frame's
// JSON value when it is JSON, else a string (base64 for a binary frame).
func encodeJSON(id, name string, data []byte, binary bool) []byte {
	buf := make([]byte, 0, len(data)+len(id)+len(name)+32)
	if id != "" {
		buf = append(buf, `{"id":"`...)
		buf = append(buf, id...) // ids need no escaping
		buf = append(buf, `","event":`...)
	} else {
		buf = append(buf, `{"event":`...)
	}
	buf = appendJSONString(buf, name)
	buf = append(buf, `,"data":`...)
	switch {
	case binary:
		buf = append(buf, '"')
		buf = base64.StdEncoding.AppendEncode(buf, data)
		buf = append(buf, '"')
	case json.Valid(data):
		// json.Valid lets invalid UTF-8 through inside strings, and a
		// WebSocket client fails the connection on such a text frame.
		if !utf8.Valid(data) {
			data = bytes.ToValidUTF8(data, []byte(string(utf8.RuneError)))
		}
		buf = append(buf, bytes.TrimSpace(data)...)
	default:
		buf = appendJSONString(buf, string(data))
	}
	return append(buf, '}')
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// noticeData is the JSON of an "upstream" notice.
type noticeData struct {
	State     string `json:"state"`
	Error     string `json:"error,omitempty"`
	RetryInMs *int64 `json:"retryInMs,omitempty"`
}
