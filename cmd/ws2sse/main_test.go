package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ws2sse/ws2sse/internal/wstest"
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

// waitTimeout bounds every wait on a condition.
const waitTimeout = wstest.WaitTimeout

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

// instance is ws2sse running in this process through run.
type instance struct {
	addr   string // host:port it listens on
	logs   *wstest.LogSink
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
	in := &instance{logs: wstest.NewLogSink(t), cancel: cancel, code: make(chan int, 1)}
	var stdout wstest.Buffer
	go func() { in.code <- run(ctx, args, &stdout, in.logs) }()
	t.Cleanup(func() {
		if code := in.stop(t); code != exitOK {
			t.Errorf("ws2sse exited with %d after shutdown, want 0", code)
		}
	})
	select {
	case in.addr = <-in.logs.Addr:
	case code := <-in.code:
		in.stopOnce.Do(func() { in.exit = code })
		t.Fatalf("ws2sse exited with %d before listening", code)
	case <-time.After(waitTimeout):
		t.Fatal("ws2sse did not log its listening address")
	}
	return in
}

// startConfig runs ws2sse with the configuration file src and args, as
// startRun does, on a free loopback port.
func startConfig(t testing.TB, src string, args ...string) *instance {
	t.Helper()
	return startRun(t, append([]string{"-config", writeConfig(t, src), "-listen", "127.0.0.1:0"}, args...)...)
}

// feedChannel is the channel most tests serve: "feed" at /feed, eager, on
// f's /ws/feed, with more keys of the channel, one a line.
func feedChannel(f *feed, keys ...string) string {
	src := fmt.Sprintf(`
[[channel]]
name = "feed"
path = "/feed"
url = "ws://%s/ws/feed"
lazy = false
`, f.host())
	for _, k := range keys {
		src += k + "\n"
	}
	return src
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
