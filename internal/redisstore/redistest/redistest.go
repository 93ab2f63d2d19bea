// Package redistest runs a real redis-server on loopback for tests.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long redis-server may take to answer.
const startTimeout = 10 * time.Second

// Server is a redis-server process on a loopback port, with no persistence:
// what it holds is lost when it stops.
type Server struct {
	t    testing.TB
	path string // the redis-server binary
	dir  string // its working directory
	Port int

	mu   sync.Mutex
	cmd  *exec.Cmd     // the running process; nil while stopped
	done chan struct{} // closed when cmd has exited
	out  bytes.Buffer  // what the server printed; guarded by mu
}

// Start starts a redis-server on a free loopback port; it is killed when the
// test ends. Without a redis-server binary, the test is skipped, or fails
// when the environment variable CI is "true".
func Start(t testing.TB) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed; CI must install it (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server): skipping the tests that need Redis")
	}
	s := &Server{t: t, path: path, dir: t.TempDir()}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("redis-server output:\n%s", s.out.String())
			s.mu.Unlock()
		}
	})
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		if err := s.start(); err == nil {
			return s
		} else if attempt == 4 {
			t.Fatalf("redis-server did not start: %v", err)
		}
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() error {
	cmd := exec.Command(s.path,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout = lockedWriter{s}
	cmd.Stderr = lockedWriter{s}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr()) == nil {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", cmd.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server does not answer on %s", s.Addr())
		}
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// ping sends PING and expects PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill stops the server with SIGKILL, as a crash would; everything it held
// is lost.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not start again on port %d: %v", s.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
