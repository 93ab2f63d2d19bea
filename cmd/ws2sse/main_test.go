package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// envRunMain makes the test binary run main() instead of the tests, so that
// a test can start it as a real ws2sse process.
const envRunMain = "WS2SSE_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on a condition. It is generous: a loaded
// machine running -race must not flake.
const waitTimeout = 10 * time.Second

// waitUntil polls cond until it holds, and fails the test when it does not
// within waitTimeout.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeConfig writes a configuration file in a new directory and returns
// its path.
func writeConfig(t testing.TB, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ws2sse.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// logSink is the stderr of a ws2sse run. It passes every line to t.Log,
// keeps the lines, and reports the address of the "ws2sse listening" line.
type logSink struct {
	t    testing.TB
	addr chan string // receives the listening address once

	mu      sync.Mutex
	partial []byte   // a line not ended yet
	lines   []string // every complete line
	ended   bool     // the test is over: lines are no longer passed to t.Log
}

func newLogSink(t testing.TB) *logSink {
	s := &logSink{t: t, addr: make(chan string, 1)}
	t.Cleanup(func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
	})
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
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
			case s.addr <- rec.Addr:
			default:
			}
		}
	}
	return len(p), nil
}

// contains reports whether a line holds substr.
func (s *logSink) contains(substr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// instance is ws2sse running in this process through run.
type instance struct {
	addr   string // host:port it listens on
	logs   *logSink
	cancel context.CancelFunc
	code   chan int // receives run's exit code

	stopOnce sync.Once
	exit     int // run's exit code, once stopped
}

// startRun runs ws2sse with args in this process and waits until it
// listens. It is shut down, and must exit 0, when the test ends.
func startRun(t testing.TB, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{logs: newLogSink(t), cancel: cancel, code: make(chan int, 1)}
	var stdout lockedBuffer
	go func() { in.code <- run(ctx, args, &stdout, in.logs) }()
	t.Cleanup(func() {
		if code := in.stop(t); code != exitOK {
			t.Errorf("ws2sse exited with %d after shutdown, want 0", code)
		}
	})
	select {
	case in.addr = <-in.logs.addr:
	case code := <-in.code:
		in.stopOnce.Do(func() { in.exit = code })
		t.Fatalf("ws2sse exited with %d before listening", code)
	case <-time.After(waitTimeout):
		t.Fatal("ws2sse did not log its listening address")
	}
	return in
}

// stop shuts the instance down as a signal would and returns its exit code.
func (in *instance) stop(t testing.TB) int {
	t.Helper()
	in.stopOnce.Do(func() {
		in.cancel()
		select {
		case in.exit = <-in.code:
		case <-time.After(2 * waitTimeout):
			t.Fatal("ws2sse did not return after shutdown")
		}
	})
	return in.exit
}

// url returns the http:// URL of path on the instance.
func (in *instance) url(path string) string {
	return "http://" + in.addr + path
}

// newHTTPClient returns a client of its own, so that no idle connection
// outlives the test, and that does not follow redirects.
func newHTTPClient(t testing.TB) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// rawRequest sends request bytes as they are, with no client in between to
// clean them, and returns the status line and headers of the response.
func rawRequest(t testing.TB, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", firstLine(req), err)
	}
	// The body is left unread: closing the connection discards it.
	return resp
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}
