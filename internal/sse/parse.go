package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// Event is one event dispatched by a Parser, as an EventSource would deliver
// it in a MessageEvent.
type Event struct {
	// ID is the last event ID in effect once this event is dispatched
	// (EventSource.lastEventId): the value of the latest valid "id:" field
	// of the stream, which carries over to later events that have none.
	ID string
	// Name is the event type: "message" when the event set none.
	Name string
	// Data is the event's data: its "data:" lines joined with LF.
	Data string
}

// Parser reads a text/event-stream and interprets it as the WHATWG HTML
// standard ("Parsing an event stream", "Interpreting an event stream")
// tells a browser to: the bytes are decoded as UTF-8 with each invalid
// sequence replaced by U+FFFD and one leading byte order mark dropped;
// CRLF, LF and CR each end a line, also when split across reads; an empty
// line dispatches the event built so far.
//
// A Parser buffers its input and keeps its buffers from event to event, so
// that parsing a stream allocates little more than the strings of the
// events it returns. It is not safe for concurrent use.
type Parser struct {
	r   io.Reader
	buf []byte // read buffer; buf[start:end] is not consumed yet
	// start and end delimit the unread part of buf.
	start, end int
	err        error // sticky error of r

	line    []byte // a line that spans reads, without its terminator
	dec     []byte // scratch for a line that needed U+FFFD replacement
	bomDone bool   // the check for a leading byte order mark is done
	skipLF  bool   // the last line ended with a CR: a next LF belongs to it

	data      []byte // data buffer
	eventType []byte // event type buffer
	lastID    string // last event ID buffer
	lastName  string // the event type string of the latest event, reused

	retry    time.Duration
	hasRetry bool
	comments int
}

const readSize = 4096

// NewParser returns a Parser that reads the event stream from r.
func NewParser(r io.Reader) *Parser {
	return &Parser{r: r, buf: make([]byte, readSize)}
}

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF; an event whose blank line had not arrived by then is
// discarded, as the standard requires. Any other error is the reader's.
func (p *Parser) Next() (Event, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if ev, ok := p.processLine(p.decode(line)); ok {
			return ev, nil
		}
	}
}

// Retry returns the reconnection time of the last valid "retry:" field
// read, and whether there was one.
func (p *Parser) Retry() (time.Duration, bool) {
	return p.retry, p.hasRetry
}

// Comments returns how many comment lines (those starting with a colon,
// as heartbeats are) have been read.
func (p *Parser) Comments() int {
	return p.comments
}

// ParseAll parses a whole event stream held in b and returns its events.
// An unfinished event at the end of b is not returned.
func ParseAll(b []byte) ([]Event, error) {
	p := NewParser(bytes.NewReader(b))
	var evs []Event
	for {
		ev, err := p.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// processLine interprets one decoded line. It reports an event when the
// line dispatched one.
func (p *Parser) processLine(line []byte) (Event, bool) {
	if len(line) == 0 {
		return p.dispatch()
	}
	if line[0] == ':' {
		p.comments++
		return Event{}, false
	}
	field, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.eventType = append(p.eventType[:0], value...)
	case "data":
		p.data = append(p.data, value...)
		p.data = append(p.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != p.lastID {
			p.lastID = string(value)
		}
	case "retry":
		if ms, ok := parseDigits(value); ok {
			p.retry, p.hasRetry = ms, true
		}
	}
	return Event{}, false
}

// dispatch runs the standard's "dispatch the event" steps for a browser.
func (p *Parser) dispatch() (Event, bool) {
	// Step 1 sets the source's last event ID string to the last event ID
	// buffer; the buffer is kept, so ev.ID is simply its value. Emptiness
	// is checked before the last LF is removed: a "data:" line with an
	// empty value dispatches an event whose data is empty.
	if len(p.data) == 0 {
		p.eventType = p.eventType[:0]
		return Event{}, false
	}
	data := p.data
	if data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
	}
	ev := Event{ID: p.lastID, Name: "message", Data: string(data)}
	if len(p.eventType) > 0 {
		if string(p.eventType) != p.lastName {
			p.lastName = string(p.eventType)
		}
		ev.Name = p.lastName
	}
	p.data = p.data[:0]
	p.eventType = p.eventType[:0]
	return ev, true
}

// parseDigits parses a "retry:" value: one or more ASCII digits, a number
// of milliseconds. Anything else is not a valid value. A number too large
// for a time.Duration gives the largest one.
func parseDigits(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	const limit = math.MaxInt64 / int64(time.Millisecond)
	var ms int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ms <= limit {
			ms = ms*10 + int64(c-'0')
		}
	}
	if ms > limit {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(ms) * time.Millisecond, true
}

// readLine returns the next line without its terminator. The line is only
// valid until the next call. A last line that no CR or LF ends is not a
// line: at the end of the stream it is dropped and the error returned.
func (p *Parser) readLine() ([]byte, error) {
	if !p.bomDone {
		if err := p.skipBOM(); err != nil {
			return nil, err
		}
	}
	for {
		if p.start < p.end {
			chunk := p.buf[p.start:p.end]
			if p.skipLF {
				p.skipLF = false
				if chunk[0] == '\n' {
					p.start++
					continue
				}
			}
			if i := lineBreak(chunk); i >= 0 {
				p.start += i + 1
				if chunk[i] == '\r' {
					if i+1 < len(chunk) {
						if chunk[i+1] == '\n' {
							p.start++
						}
					} else {
						p.skipLF = true
					}
				}
				if len(p.line) == 0 {
					return chunk[:i], nil
				}
				p.line = append(p.line, chunk[:i]...)
				line := p.line
				p.line = p.line[:0]
				return line, nil
			}
			p.line = append(p.line, chunk...)
			p.start, p.end = 0, 0
		}
		if err := p.fill(); err != nil {
			p.line = p.line[:0]
			return nil, err
		}
	}
}

// lineBreak returns the index of the first CR or LF in b, or -1.
func lineBreak(b []byte) int {
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if cr := bytes.IndexByte(b[:lf], '\r'); cr >= 0 {
		return cr
	}
	return lf
}

// skipBOM drops the bytes EF BB BF at the very start of the stream, as the
// standard's "UTF-8 decode" does, once.
func (p *Parser) skipBOM() error {
	for p.end-p.start < 3 {
		if err := p.fill(); err != nil {
			if p.start < p.end {
				break // fewer than three bytes: no BOM; hand them on first
			}
			return err
		}
	}
	if p.end-p.start >= 3 && p.buf[p.start] == 0xef && p.buf[p.start+1] == 0xbb && p.buf[p.start+2] == 0xbf {
		p.start += 3
	}
	p.bomDone = true
	return nil
}

// fill reads more input to the end of buf. It returns an error once the
// reader has none left, after every byte it gave has been buffered.
func (p *Parser) fill() error {
	if p.err != nil {
		return p.err
	}
	if p.start == p.end {
		p.start, p.end = 0, 0
	}
	for tries := 0; tries < 100; tries++ {
		n, err := p.r.Read(p.buf[p.end:])
		if n < 0 || n > len(p.buf)-p.end {
			p.err = errors.New("sse: reader returned an invalid count")
			return p.err
		}
		p.end += n
		if err != nil {
			p.err = err
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	p.err = io.ErrNoProgress
	return p.err
}

// decode returns line decoded by the WHATWG UTF-8 decoder. Lines are
// decoded one by one: CR and LF are ASCII, and an ASCII byte ends any
// unfinished sequence before it (with U+FFFD), so this gives the same text
// as decoding the whole stream at once.
func (p *Parser) decode(line []byte) []byte {
	for i, c := range line {
		if c >= 0x80 {
			if validUTF8(line[i:]) {
				return line
			}
			p.dec = appendDecoded(append(p.dec[:0], line[:i]...), line[i:])
			return p.dec
		}
	}
	return line
}

// validUTF8 reports whether the WHATWG UTF-8 decoder decodes b without an
// error, so that its output is b itself.
func validUTF8(b []byte) bool {
	d := newUTF8Decoder()
	for _, c := range b {
		if d.step(c) == stepError {
			return false
		}
	}
	return d.needed == 0
}

// appendDecoded appends the WHATWG UTF-8 decoding of src, a complete byte
// sequence, to dst, each error becoming U+FFFD.
func appendDecoded(dst, src []byte) []byte {
	d := newUTF8Decoder()
	for i := 0; i < len(src); {
		switch d.step(src[i]) {
		case stepCodePoint:
			i++
			dst = utf8.AppendRune(dst, d.codePoint)
		case stepContinue:
			i++
		case stepError:
			dst = append(dst, "\uFFFD"...)
			if !d.restore {
				i++
			}
		}
	}
	if d.needed != 0 {
		dst = append(dst, "\uFFFD"...)
	}
	return dst
}

type stepResult int

const (
	stepContinue stepResult = iota
	stepCodePoint
	stepError
)

// utf8Decoder is the state of the WHATWG Encoding standard's UTF-8
// decoder (https://encoding.spec.whatwg.org/#utf-8-decoder).
type utf8Decoder struct {
	codePoint    rune // UTF-8 code point
	needed, seen int  // UTF-8 bytes needed, UTF-8 bytes seen
	lower, upper byte // UTF-8 lower boundary, UTF-8 upper boundary
	restore      bool // the last error put its byte back in the queue
}

func newUTF8Decoder() utf8Decoder {
	return utf8Decoder{lower: 0x80, upper: 0xbf}
}

// step runs the decoder's handler on one byte. After stepError, restore
// tells whether the byte has to be given to step again.
func (d *utf8Decoder) step(b byte) stepResult {
	d.restore = false
	if d.needed == 0 {
		switch {
		case b <= 0x7f:
			d.codePoint = rune(b)
			return stepCodePoint
		case b >= 0xc2 && b <= 0xdf:
			d.needed = 1
			d.codePoint = rune(b & 0x1f)
		case b >= 0xe0 && b <= 0xef:
			if b == 0xe0 {
				d.lower = 0xa0
			}
			if b == 0xed {
				d.upper = 0x9f
			}
			d.needed = 2
			d.codePoint = rune(b & 0xf)
		case b >= 0xf0 && b <= 0xf4:
			if b == 0xf0 {
				d.lower = 0x90
			}
			if b == 0xf4 {
				d.upper = 0x8f
			}
			d.needed = 3
			d.codePoint = rune(b & 0x7)
		default:
			return stepError
		}
		return stepContinue
	}
	if b < d.lower || b > d.upper {
		d.codePoint, d.needed, d.seen = 0, 0, 0
		d.lower, d.upper = 0x80, 0xbf
		d.restore = true
		return stepError
	}
	d.lower, d.upper = 0x80, 0xbf
	d.codePoint = d.codePoint<<6 | rune(b&0x3f)
	d.seen++
	if d.seen != d.needed {
		return stepContinue
	}
	d.needed, d.seen = 0, 0
	return stepCodePoint
}
