//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The floor is what the kernel charges one thread for one 256-byte
// write(2) to one of thousands of loopback TCP connections: no server can
// deliver an event to a client on its own socket for less. The writer
// (-floor-write) runs on the core the servers get; the readers
// (-floor-drain) drain every connection from one epoll loop in another
// process.

// floorResult is what -floor-write reports.
type floorResult struct {
	Conns      int       `json:"conns"`
	Writes     int       `json:"writes"`     // per run
	Runs       []float64 `json:"runs"`       // CPU microseconds per write, each run
	PerWrite   float64   `json:"perWrite"`   // the median run
	WallPerOp  float64   `json:"wallPerOp"`  // wall microseconds per write, median run
	ShortWrite int       `json:"shortWrite"` // writes that did not take 256 bytes at once
}

// runFloorWrite connects conns sockets to addr and writes 256 bytes to
// them round-robin from one locked thread, timing the thread's CPU with
// getrusage(RUSAGE_THREAD).
func runFloorWrite(addr string, conns, writes, runs int) (floorResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() || !ap.Addr().Is4() {
		return floorResult{}, fmt.Errorf("floor: %q is not a loopback IPv4 address", addr)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	fds := make([]int, 0, conns)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range conns {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return floorResult{}, fmt.Errorf("floor: socket: %w", err)
		}
		fds = append(fds, fd)
		if err := unix.Connect(fd, sa); err != nil {
			return floorResult{}, fmt.Errorf("floor: connect: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	payload := appendPayload(nil, 0, 1, time.Now().UnixNano())
	res := floorResult{Conns: conns, Writes: writes}
	var walls []float64
	write := func(n int) error {
		for i := range n {
			k, err := unix.Write(fds[i%len(fds)], payload)
			if err != nil {
				return fmt.Errorf("floor: write: %w", err)
			}
			if k != len(payload) {
				res.ShortWrite++
			}
		}
		return nil
	}
	if err := write(len(fds)); err != nil { // warm every connection up
		return res, err
	}
	for range runs {
		var r0, r1 unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &r0)
		t0 := time.Now()
		if err := write(writes); err != nil {
			return res, err
		}
		wall := time.Since(t0)
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &r1)
		cpu := rusageCPU(&r1) - rusageCPU(&r0)
		res.Runs = append(res.Runs, float64(cpu.Microseconds())/float64(writes))
		walls = append(walls, float64(wall.Microseconds())/float64(writes))
	}
	sorted := slices.Clone(res.Runs)
	slices.Sort(sorted)
	res.PerWrite = sorted[len(sorted)/2]
	slices.Sort(walls)
	res.WallPerOp = walls[len(walls)/2]
	return res, nil
}

func rusageCPU(r *unix.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// runFloorDrain listens on loopback, prints {"addr":...} on stdout, and
// reads every connection it accepts until stdin closes or a minute passes.
func runFloorDrain(stdin io.Reader, stdout io.Writer) error {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		return err
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		return err
	}
	port := sa.(*unix.SockaddrInet4).Port
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	for _, fd := range []int{lfd, p[0]} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return err
		}
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		_, _ = unix.Write(p[1], []byte{1})
	}()
	if err := json.NewEncoder(stdout).Encode(map[string]string{"addr": fmt.Sprintf("127.0.0.1:%d", port)}); err != nil {
		return err
	}
	var conns []int
	defer func() {
		for _, fd := range conns {
			unix.Close(fd)
		}
	}()
	buf := make([]byte, 256<<10)
	events := make([]unix.EpollEvent, 512)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		for _, ev := range events[:max(n, 0)] {
			switch fd := int(ev.Fd); fd {
			case p[0]:
				return nil
			case lfd:
				for {
					nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break
					}
					conns = append(conns, nfd)
					_ = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, nfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(nfd)})
				}
			default:
				for {
					k, err := unix.Read(fd, buf)
					if k <= 0 || err != nil {
						if k == 0 && err == nil {
							_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil)
						}
						break
					}
				}
			}
		}
	}
	return nil
}

// readAddrLine reads the drain's first line.
func readAddrLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return "", err
	}
	var v struct{ Addr string }
	if err := json.Unmarshal(line, &v); err != nil || v.Addr == "" {
		return "", fmt.Errorf("bad address line %q", line)
	}
	return v.Addr, nil
}

// floorMain runs -floor-write or -floor-drain and exits.
func floorMain(write string, conns, writes int) {
	var err error
	if write != "" {
		var res floorResult
		if res, err = runFloorWrite(write, conns, writes, 5); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(res)
		}
	} else {
		err = runFloorDrain(os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
