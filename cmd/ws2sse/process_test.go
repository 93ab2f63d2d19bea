package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// process is ws2sse running as a process of its own: this test binary,
// which runs main() when envRunMain is set.
type process struct {
	cmd    *exec.Cmd
	addr   string
	logs   *wstest.LogSink
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's; set before exited is closed
}

// startProcess starts ws2sse with args and waits until it listens. It is
// killed if it still runs when the test ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{logs: wstest.NewLogSink(t), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	// A race-enabled binary sleeps a second before it exits unless told
	// not to; the tests time the exit.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), envRunMain+"=1", "GORACE="+gorace)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-p.logs.Addr:
	case <-p.exited:
		t.Fatalf("ws2sse exited before listening: %v", p.err)
	case <-time.After(waitTimeout):
		t.Fatal("ws2sse did not log its listening address")
	}
	return p
}

// TestSignals runs ws2sse as a real process: events pushed by the feed reach
// an SSE client, then a signal shuts it down gracefully.
func TestSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testSignal(t, sig)
		})
	}
}

func testSignal(t *testing.T, sig syscall.Signal) {
	const grace = 3 * time.Second
	f := newFeed(t)
	file := writeConfig(t, fmt.Sprintf(`
[server]
shutdown_grace = "%s"

[downstream]
retry = "5s"
`, grace)+feedChannel(f, `subscribe = ['{"op":"subscribe","args":["all"]}']`, `event_field = "type"`))
	p := startProcess(t, "-config", file, "-listen", "127.0.0.1:0")

	// The channel is eager: it connects and subscribes before any client.
	up := f.conn(t, 1)
	if up.url != "/ws/feed" {
		t.Errorf("feed request URL %q, want /ws/feed", up.url)
	}
	if got := up.waitFrames(t, 1); got[0] != `{"op":"subscribe","args":["all"]}` {
		t.Errorf("subscribe frame %q", got[0])
	}

	client := newHTTPClient(t)
	s := openSSE(t, client, "http://"+p.addr+"/feed", nil)
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}

	frames := []struct{ in, name, data string }{
		{`{"type":"trade","px":101.5}`, "trade", `{"type":"trade","px":101.5}`},
		{`{"px":102}`, "message", `{"px":102}`},
		{`{"type":"upstream","state":"up"}`, "message", `{"type":"upstream","state":"up"}`}, // ws2sse's own name: not taken
		{"line1\r\nline2\rline3\n\nid: 999\nevent: evil\ndata: x", "message", "line1\nline2\nline3\n\nid: 999\nevent: evil\ndata: x"},
		{`{"type":"quote","bid":1}`, "quote", `{"type":"quote","bid":1}`},
	}
	var ids []string
	for _, fr := range frames {
		up.send(t, fr.in)
		it := s.nextItem(t)
		if it.err != nil {
			t.Fatalf("stream ended: %v", it.err)
		}
		if it.ev.Name != fr.name || it.ev.Data != fr.data {
			t.Errorf("frame %q: got event %q data %q, want event %q data %q", fr.in, it.ev.Name, it.ev.Data, fr.name, fr.data)
		}
		if it.retry != 5*time.Second {
			t.Errorf("retry: %s, want 5s as configured", it.retry)
		}
		ids = append(ids, it.ev.ID)
	}
	checkIDsIncrease(t, ids...)

	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}

	// The client is told to come back soon, then its stream ends.
	evs, retry := s.end(t)
	if len(evs) != 0 {
		t.Errorf("events after the signal: %+v", evs)
	}
	if retry <= 0 || retry >= 5*time.Second {
		t.Errorf("last retry: %s, want a short one, under the configured 5s", retry)
	}

	select {
	case <-p.exited:
	case <-time.After(grace + waitTimeout):
		t.Fatalf("ws2sse still runs %s after %s", grace+waitTimeout, sig)
	}
	took := time.Since(start)
	t.Logf("exited %s after %s", took, sig)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after %s, want 0 (%v)", code, sig, p.err)
	}
	if took > grace+time.Second {
		t.Errorf("exited %s after %s, want within shutdown_grace (%s)", took, sig, grace)
	}
	if p.logs.Contains("closing remaining connections") {
		t.Error("the shutdown took the whole grace period though every peer was responsive")
	}

	// The feed saw its connection closed, as going away.
	if st := up.waitClosed(t); st != websocket.StatusGoingAway {
		t.Errorf("feed connection closed with %v, want %v", st, websocket.StatusGoingAway)
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d connections to the feed, want 1", n)
	}
}

// TestSignalWebSocket: on shutdown a WebSocket client is told the server is
// going away (1001) before the process exits, rather than having its
// connection cut.
func TestSignalWebSocket(t *testing.T) {
	t.Parallel()
	p, _, c := startWithWebSocketClient(t, "3s")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, _, err := c.Read(ctx)
	if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
		t.Errorf("the WebSocket client saw %v, want close status %v", err, websocket.StatusGoingAway)
	}
	<-p.exited
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// startWithWebSocketClient starts ws2sse with the shutdown grace given and
// a WebSocket client that has read a first event. It returns the process,
// its feed connection and the client.
func startWithWebSocketClient(t *testing.T, grace string) (*process, *feedConn, *websocket.Conn) {
	t.Helper()
	f := newFeed(t)
	file := writeConfig(t, `
[server]
shutdown_grace = "`+grace+`"
`+feedChannel(f))
	p := startProcess(t, "-config", file, "-listen", "127.0.0.1:0")
	up := f.conn(t, 1)
	c := dialWS(t, "ws://"+p.addr+"/feed")
	up.send(t, "hello")
	if _, b := readWS(t, c); string(b) != "hello" {
		t.Fatalf("got %q, want hello", b)
	}
	return p, up, c
}

// startHeldShutdown starts ws2sse with the shutdown grace given, gives it
// a WebSocket client that never answers the close (it holds the shutdown
// up until the grace's cut-off), sends it SIGTERM and waits for the
// shutdown to start. It returns the process and its feed connection.
func startHeldShutdown(t *testing.T, grace string) (*process, *feedConn) {
	t.Helper()
	p, up, _ := startWithWebSocketClient(t, grace) // the client is never read again
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wstest.Eventually(t, "the shutdown to start", func() bool { return p.logs.Contains("shutting down") })
	return p, up
}

// TestSecondSignal: a second SIGTERM during the shutdown, a second or more
// after the first, ends the process at once, killed by that signal,
// instead of waiting for the clients that hold the grace up (here a
// WebSocket client that never answers the close). One that follows the
// first at once is taken for the same signal delivered twice.
func TestSecondSignal(t *testing.T) {
	t.Parallel()
	p, _ := startHeldShutdown(t, "60s")
	// Until a second has passed, one signal after another.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(waitTimeout)
	for exited := false; !exited; {
		select {
		case <-p.exited:
			exited = true
		case <-tick.C:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		case <-timeout:
			t.Fatal("ws2sse still runs after repeated SIGTERMs")
		}
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("ws2sse ended with %v, want killed by the second SIGTERM", p.cmd.ProcessState)
	}
	if !p.logs.Contains("second signal: exiting now") {
		t.Error("the forced exit was not logged")
	}
	if p.logs.Contains("ws2sse stopped") {
		t.Error("the shutdown finished: the second signal was not what ended it")
	}
}

// TestSignalTwiceAtOnce: a SIGTERM that follows the first within
// milliseconds, as a terminal and a supervisor that forwards its signals
// deliver one Ctrl-C, is the same one: the shutdown goes on to its end,
// here the grace's cut-off of a WebSocket client that never answers the
// close.
func TestSignalTwiceAtOnce(t *testing.T) {
	t.Parallel()
	p, up := startHeldShutdown(t, "3s")
	// Once the first has been taken (two sent together may be merged into
	// one by the kernel), well within the second that follows it.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if code := p.cmd.ProcessState.ExitCode(); code != 0 || !p.logs.Contains("ws2sse stopped") {
		t.Errorf("ws2sse ended with %v, want a shutdown to its end and exit code 0", p.cmd.ProcessState)
	}
	if st := up.waitClosed(t); st != websocket.StatusGoingAway {
		t.Errorf("feed connection closed with %v, want %v", st, websocket.StatusGoingAway)
	}
}
