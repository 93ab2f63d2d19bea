package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// relay is a TCP proxy between the browser and ws2sse that the test can cut,
// as a flaky network or a restarting load balancer would.
type relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and every pipe

	mu      sync.Mutex
	conns   map[net.Conn]bool // open connections, both sides; guarded by mu
	blocked bool              // refuse new connections; guarded by mu
	refused int               // connections refused while blocked; guarded by mu
	heads   []*bytes.Buffer   // the first bytes each connection sent to ws2sse; guarded by mu
}

// headBytes is how much of what a connection sends is kept, for its
// request headers.
const headBytes = 8 << 10

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, conns: make(map[net.Conn]bool)}
	r.wg.Add(1)
	go r.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		r.cut()
		r.wg.Wait()
	})
	return r
}

// addr is the relay's host:port.
func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		blocked := r.blocked
		if blocked {
			r.refused++
		}
		r.mu.Unlock()
		if blocked {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		head := &bytes.Buffer{}
		r.mu.Lock()
		r.conns[c], r.conns[up] = true, true
		r.heads = append(r.heads, head)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c, head)
		go r.pipe(c, up, nil)
	}
}

// pipe copies src to dst until either fails, then closes both. With head,
// it also keeps the first bytes copied.
func (r *relay) pipe(dst, src net.Conn, head *bytes.Buffer) {
	defer r.wg.Done()
	var w io.Writer = dst
	if head != nil {
		w = io.MultiWriter(dst, &headWriter{r: r, buf: head})
	}
	_, _ = io.Copy(w, src)
	r.mu.Lock()
	delete(r.conns, dst)
	delete(r.conns, src)
	r.mu.Unlock()
	dst.Close()
	src.Close()
}

// headWriter keeps up to headBytes of a stream in buf, under the relay's lock.
type headWriter struct {
	r   *relay
	buf *bytes.Buffer
}

func (h *headWriter) Write(p []byte) (int, error) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if room := headBytes - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// cut closes every open connection, mid-stream.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// block cuts every connection and refuses new ones until unblock.
func (r *relay) block() {
	r.mu.Lock()
	r.blocked = true
	r.mu.Unlock()
	r.cut()
}

// refusedCount returns how many connections were refused while blocked.
func (r *relay) refusedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func (r *relay) unblock() {
	r.mu.Lock()
	r.blocked = false
	r.mu.Unlock()
}

// requests returns the head of every HTTP request the relay passed on for
// path, in order: its request line and headers.
func (r *relay) requests(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.heads {
		for _, head := range strings.Split(b.String(), "\r\n\r\n") {
			if strings.HasPrefix(head, "GET "+path+" ") || strings.HasPrefix(head, "GET "+path+"?") {
				out = append(out, head)
			}
		}
	}
	return out
}

// header returns the value of the header name in a request head.
func header(head, name string) string {
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
