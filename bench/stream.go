//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// This file holds the protocol side of a load client, free of sockets so
// that it can be tested on its own: the HTTP/1.1 response head, chunked
// transfer coding, the SSE field parser and WebSocket framing. Each parser
// takes the bytes as they come, split anywhere, and keeps only a partial
// line or frame between calls.

// streamHandler receives what a stream carries.
type streamHandler interface {
	// event is a complete SSE event (its type, "" for message, and the
	// last event id) or WebSocket data message (typ and id nil). The
	// slices are only valid during the call.
	event(typ, id, data []byte)
	// comment is an SSE comment line (a heartbeat).
	comment()
	// ping is a WebSocket ping, to be answered with a pong.
	ping(payload []byte)
}

// errStreamEnd reports that the server ended the stream cleanly: the last
// chunk of a chunked body, or a WebSocket close frame.
var errStreamEnd = errors.New("stream ended by the server")

// maxHead bounds a response head and one WebSocket frame.
const maxHead = 64 << 10

// clientStream parses one connection's response: the head, then the body
// as SSE (chunked or not) or WebSocket frames.
type clientStream struct {
	ws       bool
	head     []byte // the head so far; nil once it is complete
	headDone bool
	status   int
	chunked  bool
	chunks   chunkDecoder
	sse      sseParser
	frames   wsParser
}

// reset readies s for a new connection of the same kind. The SSE last
// event id is kept, as a browser keeps it across reconnections.
func (s *clientStream) reset() {
	id := s.sse.id
	*s = clientStream{ws: s.ws, head: s.head[:0]}
	s.sse.id = id
}

// feed parses p. It returns errStreamEnd when the server ended the
// stream, or an error for a response it cannot accept.
func (s *clientStream) feed(p []byte, h streamHandler) error {
	if !s.headDone {
		var err error
		if p, err = s.feedHead(p); err != nil || !s.headDone {
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	if s.ws {
		return s.frames.feed(p, h)
	}
	if !s.chunked {
		s.sse.feed(p, h)
		return nil
	}
	return s.chunks.feed(p, func(b []byte) { s.sse.feed(b, h) })
}

// feedHead consumes the response head from p and returns what follows it.
func (s *clientStream) feedHead(p []byte) ([]byte, error) {
	start := len(s.head)
	// The end may straddle the previous read: search from 3 bytes back.
	from := max(start-3, 0)
	s.head = append(s.head, p...)
	i := bytes.Index(s.head[from:], []byte("\r\n\r\n"))
	if i < 0 {
		if len(s.head) > maxHead {
			return nil, errors.New("response head too long")
		}
		return nil, nil
	}
	end := from + i + 4
	rest := p[end-start:]
	if err := s.parseHead(s.head[:end]); err != nil {
		return nil, err
	}
	s.headDone = true
	s.head = s.head[:0]
	return rest, nil
}

func (s *clientStream) parseHead(head []byte) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	// "HTTP/1.1 200 OK"
	_, after, ok := bytes.Cut(line, []byte(" "))
	if !ok || !bytes.HasPrefix(line, []byte("HTTP/1.")) || len(after) < 3 {
		return fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(after[:3]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	s.status = code
	want := 200
	if s.ws {
		want = 101
	}
	if code != want {
		return fmt.Errorf("status %d", code)
	}
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")) &&
			bytes.Contains(bytes.ToLower(value), []byte("chunked")) {
			s.chunked = true
		}
	}
	return nil
}

// chunkDecoder decodes HTTP/1.1 chunked transfer coding.
type chunkDecoder struct {
	state   int
	size    int64 // of the chunk whose size line is being read
	left    int64 // bytes of the current chunk still to come
	lineLen int   // of the trailer line being read
}

const (
	csSize = iota
	csExt
	csSizeLF
	csData
	csDataCR
	csDataLF
	csTrailer
	csDone
)

// feed passes the data in p to out and returns errStreamEnd after the last
// chunk.
func (d *chunkDecoder) feed(p []byte, out func([]byte)) error {
	for len(p) > 0 {
		switch d.state {
		case csData:
			n := int(min(d.left, int64(len(p))))
			out(p[:n])
			p = p[n:]
			d.left -= int64(n)
			if d.left == 0 {
				d.state = csDataCR
			}
			continue
		case csDone:
			return errStreamEnd
		}
		c := p[0]
		p = p[1:]
		switch d.state {
		case csSize:
			switch {
			case c >= '0' && c <= '9':
				d.size = d.size<<4 | int64(c-'0')
			case c >= 'a' && c <= 'f':
				d.size = d.size<<4 | int64(c-'a'+10)
			case c >= 'A' && c <= 'F':
				d.size = d.size<<4 | int64(c-'A'+10)
			case c == ';' || c == ' ' || c == '\t':
				d.state = csExt
			case c == '\r':
				d.state = csSizeLF
			case c == '\n':
				d.endSize()
			default:
				return fmt.Errorf("bad chunk size byte %q", c)
			}
			if d.size > 1<<40 {
				return errors.New("chunk too large")
			}
		case csExt:
			if c == '\n' {
				d.endSize()
			}
		case csSizeLF:
			if c != '\n' {
				return errors.New("bad chunk size line")
			}
			d.endSize()
		case csDataCR:
			switch c {
			case '\r':
				d.state = csDataLF
			case '\n':
				d.state = csSize
			default:
				return errors.New("chunk data not followed by CRLF")
			}
		case csDataLF:
			if c != '\n' {
				return errors.New("chunk data not followed by CRLF")
			}
			d.state = csSize
		case csTrailer:
			switch c {
			case '\n':
				if d.lineLen == 0 {
					d.state = csDone
					return errStreamEnd
				}
				d.lineLen = 0
			case '\r':
			default:
				d.lineLen++
			}
		}
	}
	if d.state == csDone {
		return errStreamEnd
	}
	return nil
}

func (d *chunkDecoder) endSize() {
	if d.size == 0 {
		d.state = csTrailer
		d.lineLen = 0
		return
	}
	d.left, d.size = d.size, 0
	d.state = csData
}

// sseParser is the WHATWG event-stream interpretation: lines end at CR,
// LF or CRLF; a blank line dispatches the event.
type sseParser struct {
	line    []byte // a partial line
	skipLF  bool   // the last line ended with CR: a LF right after belongs to it
	data    []byte
	hasData bool
	typ     []byte
	id      []byte // the last event id; kept across events and reconnections
}

func (p *sseParser) feed(b []byte, h streamHandler) {
	for len(b) > 0 {
		if p.skipLF {
			p.skipLF = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexByte(b, '\n')
		end := len(b)
		if i >= 0 {
			end = i
		}
		if j := bytes.IndexByte(b[:end], '\r'); j >= 0 {
			i = j
		}
		if i < 0 {
			p.line = append(p.line, b...)
			return
		}
		line := b[:i]
		if len(p.line) > 0 {
			p.line = append(p.line, line...)
			line = p.line
		}
		p.skipLF = b[i] == '\r'
		b = b[i+1:]
		p.processLine(line, h)
		p.line = p.line[:0]
	}
}

func (p *sseParser) processLine(line []byte, h streamHandler) {
	if len(line) == 0 {
		if p.hasData {
			h.event(p.typ, p.id, p.data)
		}
		p.data, p.hasData, p.typ = p.data[:0], false, p.typ[:0]
		return
	}
	if line[0] == ':' {
		h.comment()
		return
	}
	field, value, found := bytes.Cut(line, []byte(":"))
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(field) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = append(p.id[:0], value...)
		}
	}
}

// wsParser reads WebSocket frames sent by a server (unmasked).
type wsParser struct {
	partial []byte // a partial frame
	msg     []byte // a fragmented message so far
	inMsg   bool
}

func (p *wsParser) feed(b []byte, h streamHandler) error {
	owned := false
	if len(p.partial) > 0 {
		p.partial = append(p.partial, b...)
		b, owned = p.partial, true
	}
	var err error
	for err == nil {
		var n int
		n, err = p.frame(b, h)
		if n == 0 {
			break
		}
		b = b[n:]
	}
	if owned {
		p.partial = p.partial[:copy(p.partial, b)]
	} else {
		p.partial = append(p.partial[:0], b...)
	}
	if err == nil && len(p.partial) > maxHead+14 {
		err = errors.New("WebSocket frame too large")
	}
	return err
}

// frame handles the frame at the start of b and returns its length, or 0
// when b does not hold a whole frame.
func (p *wsParser) frame(b []byte, h streamHandler) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin, op := b[0]&0x80 != 0, b[0]&0x0f
	if b[1]&0x80 != 0 {
		return 0, errors.New("masked frame from the server")
	}
	n, off := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil
		}
		n, off = uint64(b[2])<<8|uint64(b[3]), 4
	case 127:
		if len(b) < 10 {
			return 0, nil
		}
		n = 0
		for _, c := range b[2:10] {
			n = n<<8 | uint64(c)
		}
		off = 10
	}
	if n > maxHead {
		return 0, errors.New("WebSocket frame too large")
	}
	if uint64(len(b)-off) < n {
		return 0, nil
	}
	payload := b[off : off+int(n)]
	switch op {
	case 0x1, 0x2:
		if fin {
			h.event(nil, nil, payload)
		} else {
			p.msg, p.inMsg = append(p.msg[:0], payload...), true
		}
	case 0x0:
		if !p.inMsg {
			return 0, errors.New("continuation frame outside a message")
		}
		p.msg = append(p.msg, payload...)
		if fin {
			h.event(nil, nil, p.msg)
			p.msg, p.inMsg = p.msg[:0], false
		}
	case 0x8:
		return off + int(n), errStreamEnd
	case 0x9:
		h.ping(payload)
	case 0xA:
	default:
		return 0, fmt.Errorf("unknown WebSocket opcode %d", op)
	}
	return off + int(n), nil
}

// appendPong appends a client's (masked) pong frame answering payload.
func appendPong(dst, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x8A, 0x80|byte(len(payload)))
	dst = append(dst, mask[:]...)
	for i, c := range payload {
		dst = append(dst, c^mask[i%4])
	}
	return dst
}

// parsePayload reads the sequence number and the send time out of a feed
// payload ({"seq":N,"sent":UNIXNANO,...}).
func parsePayload(b []byte) (seq, sent int64, ok bool) {
	seq, ok1 := jsonInt(b, `"seq":`)
	sent, ok2 := jsonInt(b, `"sent":`)
	return seq, sent, ok1 && ok2
}

func jsonInt(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	var v int64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n > 0
}
