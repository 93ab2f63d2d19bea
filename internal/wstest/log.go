package wstest

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// Buffer is a bytes.Buffer safe for concurrent use: what a server under
// test writes while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a logger that writes to t's log and to each of also.
func Logger(t testing.TB, also ...io.Writer) zerolog.Logger {
	var w io.Writer = zerolog.NewTestWriter(t)
	if len(also) > 0 {
		w = io.MultiWriter(append([]io.Writer{w}, also...)...)
	}
	return zerolog.New(w)
}

// LogSink is the log of a ws2sse under test. It passes every line to t.Log
// while the test runs, keeps the lines, and reports the address of the
// "ws2sse listening" line on Addr.
type LogSink struct {
	t    testing.TB
	Addr chan string // receives the listening address once

	mu      sync.Mutex
	partial []byte   // a line not ended yet; guarded by mu
	lines   []string // every complete line; guarded by mu
	ended   bool     // the test is over: lines are no longer passed to t.Log; guarded by mu
}

// NewLogSink returns a sink that stops passing lines to t.Log when t ends.
func NewLogSink(t testing.TB) *LogSink {
	s := &LogSink{t: t, Addr: make(chan string, 1)}
	t.Cleanup(func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
	})
	return s
}

func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		s.lines = append(s.lines, line)
		if !s.ended {
			s.t.Log(line)
		}
		var rec struct {
			Message string `json:"message"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "ws2sse listening" {
			select {
			case s.Addr <- rec.Addr:
			default:
			}
		}
	}
	return len(p), nil
}

// Lines returns every complete line so far.
func (s *LogSink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Contains reports whether a line holds substr.
func (s *LogSink) Contains(substr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}
