//go:build !linux

package downstream

import (
	"net"
	"sync"
	"syscall"
)

// hangups has no shared watcher on this platform: each taken-over
// connection gets a reader goroutine of its own (see session.takeOver),
// and shards, which rely on the watcher, write no stream.
type hangups struct {
	wg *sync.WaitGroup
}

func (h *hangups) watch(*session, net.Conn) bool { return false }

func (h *hangups) unwatch(*session) {}

func discardInput(int) {}

func roomy(int) bool { return true }

func writeNonblock(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
