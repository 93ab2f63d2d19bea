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
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A load worker is this program run again with -worker. It reads a job
// (one JSON line) on stdin, opens the job's connections at the job's rate
// and reads all of them from one epoll loop on one thread, so that 9,000
// clients cost a fraction of a core. Commands follow on stdin, one JSON
// line each; the worker answers on stdout with JSON lines: a status every
// 250 ms and a report when asked.

// job is what one worker does.
type job struct {
	Worker int     `json:"worker"`
	Addr   string  `json:"addr"`   // the server, "127.0.0.1:port"
	Groups []group `json:"groups"` // the connections to open, in order
	Rate   float64 `json:"rate"`   // new connections per second
	RcvBuf int     `json:"rcvbuf"` // SO_RCVBUF of each socket; 0: the system's
	MSS    int     `json:"mss"`    // TCP_MAXSEG of each socket; 0: the system's
	// Channels is how many channels the groups name (channel numbers are
	// below it).
	Channels int `json:"channels"`
	// Deadline is when the worker stops by itself (unix nanoseconds), in
	// case its parent does not tell it to.
	Deadline int64 `json:"deadline"`
}

// group is a run of connections to one path over one transport.
type group struct {
	Path    string `json:"path"`
	Channel int    `json:"channel"`
	N       int    `json:"n"`
	WS      bool   `json:"ws"`
}

// command is a parent's order to a worker.
type command struct {
	// Cmd is "window" (count deliveries of events sent in [From, To)),
	// "report", "reconnect" (close every stream and resume it at once) or
	// "stop".
	Cmd  string `json:"cmd"`
	From int64  `json:"from,omitempty"`
	To   int64  `json:"to,omitempty"`
	At   int64  `json:"at,omitempty"` // reconnect: when the storm starts
}

// workerMsg is one line a worker writes.
type workerMsg struct {
	Type   string        `json:"type"` // "status" | "report"
	Status *workerStatus `json:"status,omitempty"`
	Report *workerReport `json:"report,omitempty"`
}

type workerStatus struct {
	Worker     int   `json:"worker"`
	Started    int   `json:"started"`    // connections opened so far
	Streaming  int   `json:"streaming"`  // with a complete response head and open
	Failed     int   `json:"failed"`     // never got a stream
	Closed     int   `json:"closed"`     // streams that ended
	Events     int64 `json:"events"`     // events received
	StormConns int   `json:"stormConns"` // streams reopened by the last reconnect
	StormLive  int   `json:"stormLive"`  // of those, the ones that got a live event again
}

// workerReport is what a worker counted.
type workerReport struct {
	workerStatus
	// Delivered counts the events sent within the window that reached a
	// connection that was streaming when the window was set.
	Delivered     int64 `json:"delivered"`
	WindowClients []int `json:"windowClients"` // per channel: connections streaming when the window was set
	// Continuity, over every connection's whole life (reconnections
	// included): a sequence number skipped, repeated, or older than the
	// last one.
	Lost          int64          `json:"lost"`
	Dup           int64          `json:"dup"`
	Reorder       int64          `json:"reorder"`
	ConnsWithLoss int            `json:"connsWithLoss"`
	WrongChannel  int64          `json:"wrongChannel"`
	Gaps          int64          `json:"gaps"`     // SSE gap events
	Overload      int64          `json:"overload"` // SSE overload events
	OtherEvents   int64          `json:"otherEvents"`
	BadPayload    int64          `json:"badPayload"`
	Heartbeats    int64          `json:"heartbeats"`
	Pings         int64          `json:"pings"`
	Errors        map[string]int `json:"errors"` // why connections failed or closed
	// Latency is from the send time to the data's arrival on the client's
	// socket (the kernel's receive timestamp); ReadLatency to when the
	// worker read it.
	Latency     histWire `json:"latency"`
	ReadLatency histWire `json:"readLatency"`
	Stamped     int64    `json:"stamped"` // reads that carried a kernel timestamp
	// Storm: after a reconnect, the time from its start until each stream
	// had its head again, and until each got an event sent after the start.
	Reconnect histWire `json:"reconnect"`
	Live      histWire `json:"live"`
}

// Connection states.
const (
	cIdle = iota
	cConnecting
	cHead
	cStreaming
	cEnded
)

type conn struct {
	w       *worker
	g       *group
	fd      int
	state   int
	out     []byte // request bytes not yet written
	s       clientStream
	lastSeq int64
	lossy   bool

	inWindow  bool
	storm     bool // reopened by a reconnect, not live yet
	stormHead bool // reopened by a reconnect, head not back yet
}

type worker struct {
	job    job
	addr   unix.SockaddrInet4
	ep     int
	wakeR  int // readable when a command is queued
	wakeW  int
	conns  []*conn
	byFD   map[int]*conn
	buf    []byte
	oob    []byte // control messages: the receive timestamp
	cmds   chan command
	out    *json.Encoder
	start  time.Time
	now    int64 // arrival time of the bytes being parsed (unix nanoseconds)
	readAt int64 // when they were read

	from, to int64 // window
	stormAt  int64

	st      workerStatus
	rep     workerReport
	latency Hist
	readLat Hist
	recon   Hist
	live    Hist
	pong    []byte
}

// runWorker is the -worker mode.
func runWorker(stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	dec := json.NewDecoder(in)
	var j job
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("failed to read the job: %w", err)
	}
	ap, err := netip.ParseAddrPort(j.Addr)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return fmt.Errorf("worker: %q is not a loopback IPv4 address", j.Addr)
	}
	w := &worker{
		job:  j,
		addr: unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()},
		byFD: make(map[int]*conn),
		buf:  make([]byte, 64<<10),
		oob:  make([]byte, 128),
		cmds: make(chan command, 16),
		out:  json.NewEncoder(stdout),
	}
	w.rep.Errors = map[string]int{}
	w.st.Worker = j.Worker
	for i := range j.Groups {
		g := &j.Groups[i]
		for range g.N {
			w.conns = append(w.conns, &conn{w: w, g: g, fd: -1, s: clientStream{ws: g.WS}})
		}
	}
	if w.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer unix.Close(w.ep)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("pipe2: %w", err)
	}
	w.wakeR, w.wakeW = p[0], p[1]
	defer unix.Close(w.wakeR)
	defer unix.Close(w.wakeW)
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, w.wakeR, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.wakeR)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	go w.readCommands(dec)
	return w.run()
}

// readCommands queues the parent's commands for the loop; end of input is
// a stop.
func (w *worker) readCommands(dec *json.Decoder) {
	for {
		var c command
		if err := dec.Decode(&c); err != nil {
			c = command{Cmd: "stop"}
		}
		w.cmds <- c
		_, _ = unix.Write(w.wakeW, []byte{1})
		if c.Cmd == "stop" {
			return
		}
	}
}

// run is the event loop. It returns when told to stop, or at the job's
// deadline.
func (w *worker) run() error {
	events := make([]unix.EpollEvent, 512)
	w.start = time.Now()
	var lastStatus time.Time
	defer w.closeAll()
	for {
		timeout := 100
		if w.st.Started < len(w.conns) {
			timeout = 5
		}
		n, err := unix.EpollWait(w.ep, events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == w.wakeR {
				var b [64]byte
				_, _ = unix.Read(w.wakeR, b[:])
				continue
			}
			if c := w.byFD[fd]; c != nil {
				w.handle(c, ev.Events)
			}
		}
		now := time.Now()
		w.ramp(now)
		for len(w.cmds) > 0 {
			if stop := w.command(<-w.cmds); stop {
				return nil
			}
		}
		if now.Sub(lastStatus) >= 250*time.Millisecond {
			lastStatus = now
			if err := w.out.Encode(workerMsg{Type: "status", Status: &w.st}); err != nil {
				return nil // the parent is gone
			}
		}
		if w.job.Deadline != 0 && now.UnixNano() > w.job.Deadline {
			return errors.New("worker: deadline passed without a stop")
		}
	}
}

// ramp opens the connections due by now at the job's rate.
func (w *worker) ramp(now time.Time) {
	due := len(w.conns)
	if w.job.Rate > 0 {
		due = min(due, int(now.Sub(w.start).Seconds()*w.job.Rate)+1)
	}
	for w.st.Started < due {
		c := w.conns[w.st.Started]
		w.st.Started++
		w.open(c)
	}
}

func (w *worker) command(c command) (stop bool) {
	switch c.Cmd {
	case "window":
		w.from, w.to = c.From, c.To
		w.latency.Reset()
		w.readLat.Reset()
		w.rep.Delivered = 0
		w.rep.WindowClients = make([]int, w.job.Channels)
		for _, cn := range w.conns {
			cn.inWindow = cn.state == cStreaming
			if cn.inWindow {
				w.rep.WindowClients[cn.g.Channel]++
			}
		}
	case "report":
		r := w.rep
		r.workerStatus = w.st
		r.Latency = w.latency.wire()
		r.ReadLatency = w.readLat.wire()
		r.Reconnect = w.recon.wire()
		r.Live = w.live.wire()
		_ = w.out.Encode(workerMsg{Type: "report", Report: &r})
	case "reconnect":
		w.stormAt = c.At
		w.recon.Reset()
		w.live.Reset()
		w.st.StormConns, w.st.StormLive = 0, 0
		for _, cn := range w.conns {
			if cn.state != cStreaming {
				continue
			}
			w.closeFD(cn)
			w.st.Streaming--
			cn.s.reset()
			cn.storm, cn.stormHead = true, true
			w.st.StormConns++
			w.open(cn)
		}
	case "stop":
		return true
	}
	return false
}

// open starts connecting c.
func (w *worker) open(c *conn) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.fail(c, "socket: "+err.Error())
		return
	}
	if w.job.RcvBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, w.job.RcvBuf)
	}
	if w.job.MSS > 0 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, w.job.MSS)
	}
	// The kernel stamps the time data arrives on the socket: latency is
	// measured to then, not to when this loop gets round to reading it.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	if err := unix.Connect(fd, &w.addr); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		w.fail(c, "connect: "+err.Error())
		return
	}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		w.fail(c, "epoll_ctl: "+err.Error())
		return
	}
	c.fd, c.state = fd, cConnecting
	c.out = w.request(c)
	w.byFD[fd] = c
}

// request returns the request that opens c's stream.
func (w *worker) request(c *conn) []byte {
	host := w.job.Addr
	if c.g.WS {
		return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", c.g.Path, host)
	}
	b := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n", c.g.Path, host)
	if id := c.s.sse.id; len(id) > 0 {
		b = fmt.Appendf(b, "Last-Event-ID: %s\r\n", id)
	}
	return append(b, "\r\n"...)
}

func (w *worker) handle(c *conn, ev uint32) {
	if c.state == cConnecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			w.fail(c, "connect: "+unix.Errno(errno).Error())
			return
		}
		c.state = cHead
	}
	if len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			w.fail(c, "write: "+err.Error())
			return
		}
		c.out = c.out[n:]
		if len(c.out) > 0 {
			return
		}
		c.out = nil
		_ = unix.EpollCtl(w.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		w.read(c)
	}
}

// read reads what c has, up to a few buffers' worth.
func (w *worker) read(c *conn) {
	for range 4 {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, w.buf, w.oob, 0)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			w.end(c, "read: "+err.Error())
			return
		case n == 0:
			w.end(c, "closed by the server")
			return
		}
		w.readAt = time.Now().UnixNano()
		w.now = w.readAt
		if ts, ok := rxTimestamp(w.oob[:oobn]); ok {
			w.now = ts
			w.rep.Stamped++
		}
		head := !c.s.headDone
		err = c.s.feed(w.buf[:n], c)
		if head && c.s.headDone && c.state == cHead {
			c.state = cStreaming
			w.st.Streaming++
			if c.stormHead {
				c.stormHead = false
				w.recon.Record(w.now - w.stormAt)
			}
		}
		if errors.Is(err, errStreamEnd) {
			w.end(c, "ended by the server")
			return
		}
		if err != nil {
			w.end(c, err.Error())
			return
		}
		if n < len(w.buf) {
			return
		}
	}
}

// fail counts a connection that never streamed; end one that did, or one
// whose response was refused.
func (w *worker) fail(c *conn, why string) {
	w.closeFD(c)
	c.state = cEnded
	w.st.Failed++
	w.rep.Errors[why]++
}

func (w *worker) end(c *conn, why string) {
	if c.state != cStreaming {
		w.fail(c, why)
		return
	}
	w.closeFD(c)
	c.state = cEnded
	w.st.Streaming--
	w.st.Closed++
	w.rep.Errors[why]++
}

func (w *worker) closeFD(c *conn) {
	if c.fd >= 0 {
		delete(w.byFD, c.fd)
		unix.Close(c.fd) // also leaves the epoll set
		c.fd = -1
	}
	c.out = nil
}

func (w *worker) closeAll() {
	for _, c := range w.conns {
		w.closeFD(c)
	}
}

// event is called for each SSE event or WebSocket message.
func (c *conn) event(typ, _, data []byte) {
	w := c.w
	if len(typ) > 0 {
		switch string(typ) {
		case "message":
		case "gap":
			w.rep.Gaps++
			return
		case "overload":
			w.rep.Overload++
			return
		default:
			w.rep.OtherEvents++
			return
		}
	}
	seq, sent, ok := parsePayload(data)
	if !ok {
		w.rep.BadPayload++
		return
	}
	if ch, ok := jsonInt(data, `"ch":`); ok && int(ch) != c.g.Channel {
		w.rep.WrongChannel++
	}
	w.st.Events++
	switch {
	case c.lastSeq == 0 || seq == c.lastSeq+1:
	case seq > c.lastSeq+1:
		w.rep.Lost += seq - c.lastSeq - 1
		if !c.lossy {
			c.lossy = true
			w.rep.ConnsWithLoss++
		}
	case seq == c.lastSeq:
		w.rep.Dup++
	default:
		w.rep.Reorder++
	}
	c.lastSeq = max(c.lastSeq, seq)
	if c.inWindow && sent >= w.from && sent < w.to {
		w.rep.Delivered++
		w.latency.Record(w.now - sent)
		w.readLat.Record(w.readAt - sent)
	}
	if c.storm && sent >= w.stormAt {
		c.storm = false
		w.st.StormLive++
		w.live.Record(w.now - w.stormAt)
	}
}

func (c *conn) comment() { c.w.rep.Heartbeats++ }

func (c *conn) ping(payload []byte) {
	w := c.w
	w.rep.Pings++
	w.pong = appendPong(w.pong[:0], payload, [4]byte{0x5a, 0x17, 0xc3, 0x9e})
	_, _ = unix.Write(c.fd, w.pong) // a few bytes: fits unless the socket is jammed
}

// workerMain runs the -worker mode and exits.
func workerMain() {
	if err := runWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// rxTimestamp returns the SCM_TIMESTAMPNS time in a recvmsg's control
// messages.
func rxTimestamp(oob []byte) (int64, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < hdr || int(h.Len) > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && int(h.Len) >= hdr+16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano(), true
		}
		oob = oob[min(cmsgAlign(int(h.Len)), len(oob)):]
	}
	return 0, false
}

func cmsgAlign(n int) int { return (n + 7) &^ 7 }
