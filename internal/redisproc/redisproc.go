// Package redisproc runs a redis-server process on a free loopback port, with
// no persistence, for the tests (through redistest) and the benchmarks.
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long redis-server may take to answer.
const startTimeout = 10 * time.Second

// Options configure a Proc.
type Options struct {
	// Dir is the server's working directory.
	Dir string
	// Output receives what the server prints; nil discards it.
	Output io.Writer
	// Wrap, if set, rewrites the command line before it runs (to pin the
	// server to a CPU with taskset, say).
	Wrap func(argv []string) []string
}

// Proc is a redis-server process. What it holds is lost when it stops.
type Proc struct {
	opts Options
	path string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd     // the running process; nil while stopped
	done chan struct{} // closed when cmd has exited
}

// Path returns the redis-server binary's path.
func Path() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("redis-server is not installed (apt-get install redis-server)")
}

// Start starts a redis-server on a free loopback port and returns once it
// answers PING. A port taken meanwhile by another process is given up for
// another, a few times.
func Start(o Options) (*Proc, error) {
	path, err := Path()
	if err != nil {
		return nil, err
	}
	p := &Proc{opts: o, path: path}
	var last error
	for range 5 {
		if p.port, err = freePort(); err != nil {
			return nil, err
		}
		if last = p.start(); last == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("redis-server did not start: %w", last)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Port returns the port the server listens on.
func (p *Proc) Port() int { return p.port }

// Addr returns host:port.
func (p *Proc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// URL returns the redis:// URL of database 0.
func (p *Proc) URL() string { return "redis://" + p.Addr() + "/0" }

// PID returns the running server's process id, or 0 while it is stopped.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// start runs the server on p.port and waits until it answers PING.
func (p *Proc) start() error {
	argv := []string{p.path,
		"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", p.opts.Dir, "--daemonize", "no", "--loglevel", "warning"}
	if p.opts.Wrap != nil {
		argv = p.opts.Wrap(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = p.opts.Output, p.opts.Output
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	for deadline := time.Now().Add(startTimeout); Ping(p.Addr()) != nil; time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server does not answer on %s", p.Addr())
		}
	}
	// Another server on the port answers PING as well (ours then fails to
	// bind and exits): only ours will do.
	if pid, err := serverPID(p.Addr()); err != nil || pid != cmd.Process.Pid {
		_ = cmd.Process.Kill()
		<-done
		if err == nil {
			err = fmt.Errorf("another redis-server (pid %d) answers on %s", pid, p.Addr())
		}
		return err
	}
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

// Kill stops the server with SIGKILL, as a crash would.
func (p *Proc) Kill() {
	cmd, done := p.take()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop stops the server with SIGTERM, or SIGKILL after 5 s.
func (p *Proc) Stop() {
	cmd, done := p.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// take returns the running process and marks the server stopped.
func (p *Proc) take() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	return cmd, done
}

// Restart kills the server and starts it again, empty, on the same port,
// retrying while the port is not free yet.
func (p *Proc) Restart() error {
	p.Kill()
	deadline := time.Now().Add(startTimeout)
	for {
		err := p.start()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ping sends PING to the server at addr and expects PONG.
func Ping(addr string) error {
	return command(addr, "PING", func(head string, _ *bufio.Reader) error {
		if head != "+PONG\r\n" {
			return fmt.Errorf("PING answered %q", head)
		}
		return nil
	})
}

// serverPID asks the server at addr for its process id (INFO server).
func serverPID(addr string) (pid int, err error) {
	err = command(addr, "INFO server", func(head string, r *bufio.Reader) error {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if !strings.HasPrefix(head, "$") || err != nil {
			return fmt.Errorf("INFO answered %q", head)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
				pid, err = strconv.Atoi(v)
				return err
			}
		}
		return errors.New("INFO server has no process_id")
	})
	return pid, err
}

// command sends an inline command to the server at addr and has read take
// the answer: its first line, then the rest from r. All of it within a
// second.
func command(addr, cmd string, read func(head string, r *bufio.Reader) error) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	return read(head, r)
}
