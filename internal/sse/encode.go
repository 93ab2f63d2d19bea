// Package sse encodes and parses the text/event-stream format of the WHATWG HTML standard.
package sse

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxIDLen is the longest event id ws2sse issues or accepts.
const MaxIDLen = 40

// ValidID reports whether id is a well-formed ws2sse event id: 1 to
// MaxIDLen bytes of [0-9A-Za-z._-]. Such an id needs no escaping on the wire.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == '.' || c == '_' || c == '-'
}

// ValidName reports whether name can be sent as an event type: 1 to 64
// bytes of valid UTF-8 with no control character, so that it can neither end
// the line nor be altered by a parser.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// AppendEvent appends one event to dst: an "id:" line when id is not empty,
// an "event:" line when name is neither empty nor "message", one "data:"
// line per line of data, and the blank line that dispatches it.
//
// CR, LF and CRLF in data each end a line, so no byte of data can end the
// event or start another field; invalid UTF-8 becomes U+FFFD exactly as a
// browser's decoder would replace it. An id or name that is not valid
// (ValidID, ValidName) is left out rather than risk the framing.
func AppendEvent(dst []byte, id, name string, data []byte) []byte {
	if id != "" && ValidID(id) {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if name != "" && name != "message" && ValidName(name) {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	dst = AppendData(dst, data)
	return append(dst, '\n')
}

// AppendData appends data as "data:" lines, one per line of data.
func AppendData(dst, data []byte) []byte {
	for {
		end, next := lineEnd(data)
		line := data[:end]
		if len(line) == 0 {
			dst = append(dst, "data:\n"...)
		} else {
			dst = append(dst, "data: "...)
			dst = appendUTF8(dst, line)
			dst = append(dst, '\n')
		}
		if next < 0 {
			return dst
		}
		data = data[next:]
	}
}

// lineEnd returns the length of the first line of b and the offset of the
// line after it, or -1 when the first line is the last.
func lineEnd(b []byte) (end, next int) {
	for i, c := range b {
		switch c {
		case '\n':
			return i, i + 1
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return i, i + 2
			}
			return i, i + 1
		}
	}
	return len(b), -1
}

// AppendComment appends a comment line and a blank line; parsers ignore both.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ": "...)
	dst = append(dst, text...)
	return append(dst, "\n\n"...)
}

// AppendRetry appends a "retry:" field that sets the client's reconnection time.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, "\n\n"...)
}

// appendUTF8 appends b with each maximal invalid subsequence replaced by
// U+FFFD, as the WHATWG UTF-8 decoder does.
func appendUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			dst = append(dst, b[i:i+n]...)
			i += n
			continue
		}
		dst = utf8.AppendRune(dst, utf8.RuneError)
		i += invalidLen(b[i:])
	}
	return dst
}

// invalidLen returns the length of the maximal subpart of an ill-formed
// sequence at the start of b (Unicode 3.9, as used by the WHATWG decoder):
// a lead byte and as many following bytes as still could form a character.
func invalidLen(b []byte) int {
	lo, hi := byte(0x80), byte(0xbf)
	var need int
	switch c := b[0]; {
	case c >= 0xc2 && c <= 0xdf:
		need = 1
	case c >= 0xe0 && c <= 0xef:
		need = 2
		if c == 0xe0 {
			lo = 0xa0
		} else if c == 0xed {
			hi = 0x9f
		}
	case c >= 0xf0 && c <= 0xf4:
		need = 3
		if c == 0xf0 {
			lo = 0x90
		} else if c == 0xf4 {
			hi = 0x8f
		}
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xbf
	}
	return n
}
