package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ws2sse/ws2sse/internal/wstest"
)

// ws2sse is a running ws2sse process.
type ws2sse struct {
	addr string          // host:port it listens on
	base string          // "http://" + addr
	logs *wstest.LogSink // its log (stderr)
}

// startWS2SSE runs the binary with the configuration src (none when empty)
// and args, on a free loopback port, and waits until it listens. Its log
// lines go to t.Log. When the test ends it is sent SIGTERM and must exit 0
// with no data race reported.
func startWS2SSE(t *testing.T, src string, args ...string) *ws2sse {
	t.Helper()
	if src != "" {
		file := filepath.Join(t.TempDir(), "ws2sse.toml")
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-config", file}, args...)
	}
	args = append(args, "-listen", "127.0.0.1:0", "-log-format", "json")
	cmd := exec.Command(ws2sseBin, args...)
	// A race-enabled binary otherwise sleeps a second before it exits.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	s := &ws2sse{logs: wstest.NewLogSink(t)}
	// Wait returns once the log is drained, and the cleanup waits for
	// that: no line is logged after the test.
	cmd.Stderr = s.logs
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			err = <-exited
			t.Errorf("ws2sse did not exit within 15s of SIGTERM")
		}
		if s.logs.Contains("WARNING: DATA RACE") {
			t.Errorf("ws2sse reported a data race: see its log above")
		}
		if err != nil {
			t.Errorf("ws2sse exited with %v after SIGTERM, want exit code 0", err)
		}
	})
	select {
	case s.addr = <-s.logs.Addr:
	case err := <-exited:
		exited <- err
		t.Fatalf("ws2sse exited before listening: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("ws2sse did not log its listening address")
	}
	s.base = "http://" + s.addr
	return s
}

// channelInfo is one channel in /channels, as far as the tests read it.
type channelInfo struct {
	Name        string   `json:"name"`
	State       string   `json:"state"`
	Clients     int      `json:"clients"`
	Events      uint64   `json:"events"`
	LastEventID string   `json:"lastEventId"`
	EventNames  []string `json:"eventNames"`
}

// channel returns the open channel name from /channels, or false.
func (s *ws2sse) channel(t *testing.T, name string) (channelInfo, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/channels", nil)
	req.Close = true // no idle connection outlives the test
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /channels: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Channels []channelInfo `json:"channels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /channels: %v", err)
	}
	for _, c := range body.Channels {
		if c.Name == name {
			return c, true
		}
	}
	return channelInfo{}, false
}

// waitChannel polls /channels until cond holds for the channel name.
func (s *ws2sse) waitChannel(t *testing.T, name, what string, cond func(channelInfo) bool) channelInfo {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, ok := s.channel(t, name)
		if ok && cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for channel %s: %s (last seen: %+v)", waitTimeout, name, what, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
