// Package redistest runs a real redis-server on loopback for tests.
package redistest

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/ws2sse/ws2sse/internal/redisproc"
)

// Server is a redis-server process on a loopback port, with no persistence:
// what it holds is lost when it stops.
type Server struct {
	*redisproc.Proc
	t   testing.TB
	out lockedBuffer // what the server printed
}

// Start starts a redis-server on a free loopback port; it is killed when the
// test ends. Without a redis-server binary, the test is skipped, or fails
// when the environment variable CI is "true".
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := redisproc.Path(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed; CI must install it (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server): skipping the tests that need Redis")
	}
	s := &Server{t: t}
	p, err := redisproc.Start(redisproc.Options{Dir: t.TempDir(), Output: &s.out})
	if err != nil {
		t.Fatal(err)
	}
	s.Proc = p
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.out.String())
		}
	})
	return s
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.Proc.Restart(); err != nil {
		s.t.Fatalf("redis-server did not start again on port %d: %v", s.Port(), err)
	}
}

// lockedBuffer is a bytes.Buffer that the server's output and the test can
// use at once.
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
