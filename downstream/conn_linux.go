// The raw socket work of taken-over connections on Linux: noticing
// hang-ups, writing without blocking, and looking at the send queue.

package downstream

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hangups notices clients that hang up, for every taken-over connection of
// a Server, from one epoll set and one goroutine: an idle client then costs
// no goroutine at all. A client sends nothing on a stream, so only the end
// of its side (EPOLLRDHUP) or an error is asked for; bytes it does send
// stay unread in the kernel.
//
// The goroutine runs while some connection is watched, and the epoll set
// lives as long as it does.
type hangups struct {
	wg *sync.WaitGroup // the Server's, so that Wait waits for the goroutine

	mu      sync.Mutex
	running bool
	epfd    int // valid while running
	evfd    int // an eventfd in the set, written to stop the goroutine
	watched map[uint64]*session
	token   uint64 // the last token handed out; 0 is the eventfd's
}

// watch starts watching conn for ss. When the client hangs up, ss.hungUp is
// called; unwatch stops watching. It reports false when conn cannot be
// watched: a connection that is not a socket. The caller must then watch
// for the hang-up itself.
func (h *hangups) watch(ss *session, conn net.Conn) bool {
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn() // TLS: its TCP connection hangs up too
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		if err := h.startLocked(); err != nil {
			return false
		}
	}
	h.token++
	token := h.token
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(token), Pad: int32(token >> 32)}
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		ss.fd = int(fd)
	}); err != nil || cerr != nil {
		ss.fd = -1
		if len(h.watched) == 0 {
			h.wakeLocked()
		}
		return false
	}
	ss.hangupToken = token
	h.watched[token] = ss
	return true
}

// unwatch stops watching ss's connection, which the caller then closes:
// closing it takes it out of the epoll set.
func (h *hangups) unwatch(ss *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.watched[ss.hangupToken]; !ok {
		return
	}
	delete(h.watched, ss.hangupToken)
	if len(h.watched) == 0 {
		h.wakeLocked() // to stop
	}
}

func (h *hangups) startLocked() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return err
	}
	h.epfd, h.evfd, h.running = epfd, evfd, true
	if h.watched == nil {
		h.watched = make(map[uint64]*session)
	}
	h.wg.Go(func() { h.run(epfd, evfd) })
	return nil
}

func (h *hangups) wakeLocked() {
	var one = [8]byte{1}
	_, _ = unix.Write(h.evfd, one[:])
}

// run waits for hang-ups until nothing is watched.
func (h *hangups) run(epfd, evfd int) {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			n = 0 // cannot happen with a valid set; the stop check still runs
		}
		h.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if token == 0 {
				var b [8]byte
				_, _ = unix.Read(evfd, b[:])
				continue
			}
			if ss, ok := h.watched[token]; ok {
				delete(h.watched, token)
				ss.hungUp()
			}
		}
		if len(h.watched) == 0 {
			h.running = false
			unix.Close(evfd)
			unix.Close(epfd)
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
}

// discardInput reads and drops what fd has received, without blocking.
func discardInput(fd int) {
	var b [512]byte
	for range 64 {
		n, err := unix.Read(fd, b[:])
		if n <= 0 || err != nil {
			return
		}
	}
}

// roomy reports whether the socket fd has at most a quarter of its send
// buffer still to send: a stream whose socket filled up goes back to its
// shard only then.
func roomy(fd int) bool {
	queued, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return true
	}
	size, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	return err != nil || queued*4 <= size
}

// writeNonblock writes b to a non-blocking socket, which never sleeps, with
// send(2) and MSG_NOSIGNAL: a client that hung up fails it with EPIPE
// rather than raising SIGPIPE in the process. It is made as a raw system
// call, which keeps the thread's P: a write the scheduler lets run long
// (the machine is busy) would otherwise have its P handed to another
// thread, and then the writer parked on its return, a few thousand
// context switches a second on a busy fan-out.
func writeNonblock(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
