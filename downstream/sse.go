package downstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/sse"
)

// bufPool holds scratch buffers for one batch of writes. A buffer goes back
// right after the write, so idle clients hold none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// eventsPool holds scratch slices for one batch of events.
var eventsPool = sync.Pool{New: func() any { s := make([]*bridge.Event, 0, 64); return &s }}

// Reasons a client session ends, as logged.
const (
	endClientLeft    = "client left"
	endSlow          = "slow"
	endShutdown      = "shutdown"
	endClosed        = "channel closed"
	endLost          = "events lost"
	endWriteError    = "write failed"
	endNoPong        = "no pong"
	endClientMessage = "client sent a message"
)

// heartbeatComment is what an idle stream is sent every Heartbeat; shared,
// never written to.
var heartbeatComment = sse.AppendComment(nil, "heartbeat")

// errEnded refuses a write to a client whose subscription has ended.
var errEnded = errors.New("subscription ended")

// session is one SSE client's stream.
//
// On HTTP/1 the connection is taken over once the headers are known, and
// the handler returns: net/http then frees everything it held for the
// connection (its buffers, the request, its goroutine's stack), which was
// most of an idle client's memory. Each batch goes out as exactly one
// write(2), with no chunked framing; the response has no length and ends
// when the connection closes.
//
// A taken-over TCP stream is then written by its channel's shards
// (shard.go), without a goroutine of its own, as long as its socket takes
// what it is given; a stream whose socket fills up gets a goroutine that
// writes with a deadline until it has caught up, and goes back. Other
// streams (TLS, or platforms without the hang-up watcher) keep a goroutine
// of the Server's. HTTP/2 streams stay in their handler and use the
// ResponseWriter.
type session struct {
	srv     *Server
	ch      *bridge.Channel
	sub     *bridge.Subscription
	release func() // frees the client's slot
	timeout time.Duration
	remote  string
	start   time.Time

	// HTTP/2, and HTTP/1 until the connection is taken over.
	w  http.ResponseWriter
	rc *http.ResponseController
	// HTTP/1 once taken over, and then w and rc are nil. Stored before the
	// handler returns; the channel reads it to expire a stuck write.
	conn atomic.Pointer[net.Conn]
	// fd is the taken-over socket's descriptor while the hangup watcher
	// watches it, else -1. A shard writes to it directly; only the
	// stream's owner closes the connection, so it stays valid meanwhile.
	fd int
	// direct: the stream is a plain TCP socket that shards may write.
	direct bool
	// home is the shard writing the stream; nil while a goroutine of its
	// own does.
	home atomic.Pointer[shard]

	left        <-chan struct{} // closed when the client hangs up
	leftCh      chan struct{}   // the same, for hungUp to close
	gone        atomic.Bool     // the same, cheaper to check for a shard
	hangupToken uint64          // the hangup watcher's
	reader      sync.WaitGroup  // a reader goroutine, where there is no watcher
	// ended is the subscription's Done channel: once it is closed, write
	// refuses to write. Nil for the last words of a stream.
	ended <-chan struct{}

	// Owned by whichever goroutine writes the stream: its shard, or its
	// own goroutine. They hand it over through a mutex or a go statement.
	gapID         string    // the resume id that was not found
	gap           bool      // the client is still to be told of the gap
	pending       []byte    // what a full socket did not take
	pendingEvents int       // the events in pending
	deadline      time.Time // the write deadline last set; zero forces a new one
	lastWrite     time.Time // for heartbeats
	events        uint64
	bytes         uint64
}

// write sends b in one write (and on HTTP/2 one flush), under the write
// deadline.
//
// The deadline is moved only once half of WriteTimeout has passed since it
// was set, not on every write: a write then has at least half of
// WriteTimeout, and most writes do without the call.
//
// When the channel ends a subscription it expires the write deadline, so
// that a write stuck on a slow client fails now. A deadline set here just
// after that would undo it and keep the client for another WriteTimeout;
// so the end is checked after the deadline is set: either it is seen here,
// or the channel's expiry comes after this deadline. (A deadline not moved
// cannot undo it.)
func (ss *session) write(b []byte) error {
	now := time.Now()
	ss.lastWrite = now
	if ss.deadline.Sub(now) < ss.timeout/2 {
		ss.deadline = now.Add(ss.timeout)
		if err := ss.setWriteDeadline(ss.deadline); err != nil {
			return err
		}
	}
	select {
	case <-ss.ended:
		return errEnded
	case <-ss.srv.closeCtx.Done():
		return errEnded // Close: no more writes, last words included
	default:
	}
	if c := ss.conn.Load(); c != nil {
		n, err := (*c).Write(b)
		ss.bytes += uint64(n)
		return err
	}
	n, err := ss.w.Write(b)
	ss.bytes += uint64(n)
	if err != nil {
		return err
	}
	return ss.rc.Flush()
}

func (ss *session) setWriteDeadline(t time.Time) error {
	if c := ss.conn.Load(); c != nil {
		return (*c).SetWriteDeadline(t)
	}
	if err := ss.rc.SetWriteDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// lastWords writes b, the end of a stream, even after its subscription
// ended: from its shard without blocking (a full socket does without), or
// from its own goroutine under a fresh deadline.
func (ss *session) lastWords(b []byte) {
	if ss.home.Load() != nil {
		_, _ = ss.writeNow(b)
		return
	}
	ss.ended = nil
	ss.deadline = time.Time{}
	_ = ss.write(b)
}

// writeNow writes b to the socket without blocking and returns how much it
// took: a full socket takes less than b, possibly nothing. For shards.
func (ss *session) writeNow(b []byte) (int, error) {
	for {
		n, err := writeNonblock(ss.fd, b)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			err = nil
		}
		n = max(n, 0)
		ss.bytes += uint64(n)
		return n, err
	}
}

// takeOver takes the HTTP/1 connection over and sends the response head and
// the first retry: field on it. It reports false when the connection cannot
// be taken over (HTTP/2).
func (ss *session) takeOver(r *http.Request, retry time.Duration) (bool, error) {
	if r.ProtoMajor != 1 {
		return false, nil
	}
	conn, _, err := ss.rc.Hijack()
	if err != nil {
		return false, nil
	}
	// Any deadline net/http left on it is ours to clear. A client sends
	// nothing on a stream, so a read that returns means it hung up.
	_ = conn.SetReadDeadline(time.Time{})
	left := make(chan struct{})
	ss.left, ss.leftCh, ss.fd = left, left, -1
	if !ss.srv.hangups.watch(ss, conn) {
		ss.reader.Go(func() {
			defer close(left)
			var b [64]byte
			for {
				if _, err := conn.Read(b[:]); err != nil {
					return
				}
			}
		})
	} else if _, ok := conn.(*net.TCPConn); ok {
		ss.direct = true // watched, and a plain socket: shards may write it
	}
	h := ss.w.Header()
	h.Set("Connection", "close")
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	ss.conn.Store(&conn)
	// net/http's, not to be used once the handler returns, and holding its
	// buffers for the connection while referenced.
	ss.w, ss.rc = nil, nil
	return true, ss.write(sse.AppendRetry(head.Bytes(), retry))
}

// cutOnClose has Server.Close expire the write deadline of a taken-over
// stream that its own goroutine writes, so that a write stuck on a client
// that stopped reading fails then. It returns the function that stops it.
func (ss *session) cutOnClose() (stop func() bool) {
	return context.AfterFunc(ss.srv.closeCtx, func() {
		if c := ss.conn.Load(); c != nil {
			_ = (*c).SetWriteDeadline(time.Now())
		}
	})
}

// hungUp is called by the hangup watcher when the client has hung up.
func (ss *session) hungUp() {
	ss.gone.Store(true)
	close(ss.leftCh)
	if sh := ss.home.Load(); sh != nil {
		sh.nudge()
	}
}

// stop closes a taken-over connection and waits for its reader. Without a
// reader, what the client sent is read first: closing a socket with unread
// input resets the connection, and loses what it has yet to send.
func (ss *session) stop() {
	if c := ss.conn.Load(); c != nil {
		ss.srv.hangups.unwatch(ss)
		if ss.fd >= 0 {
			discardInput(ss.fd)
		}
		(*c).Close()
		ss.reader.Wait()
	}
}

// end ends the session: it closes the connection, unsubscribes, frees the
// client's slot and logs the session.
func (ss *session) end(reason string) {
	ss.stop()
	ss.sub.Close()
	ss.release()
	ss.srv.log.Info().
		Str("channel", ss.ch.Name()).Str("transport", "sse").Str("remote", ss.remote).
		Dur("duration", time.Since(ss.start)).Uint64("events", ss.events).Uint64("bytes", ss.bytes).
		Str("reason", reason).Msg("client session ended")
}

func setSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// serveSSE serves one SSE client; release frees its slot when the stream
// ends, possibly after serveSSE returned.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, resolve Resolver, release func()) {
	s.streams.Add(1) // Wait covers the handler until it has handed the stream on
	defer s.streams.Done()
	ss := &session{
		srv: s, w: w, rc: http.NewResponseController(w), timeout: s.opts.WriteTimeout,
		remote: r.RemoteAddr, start: time.Now(), release: release,
	}
	// A stream its shard writes is only nudged: the shard finds the end.
	// Another may be stuck in a write: its deadline is expired so that the
	// write fails now and the connection closes. Only on a taken-over
	// connection: on HTTP/2 that would reset the stream under the handler,
	// and before the takeover nothing has been written yet.
	onEnd := func(error) {
		if sh := ss.home.Load(); sh != nil {
			sh.nudge()
		} else if c := ss.conn.Load(); c != nil {
			_ = (*c).SetWriteDeadline(time.Now())
		}
	}
	ch, sub, err := s.subscribe(r, resolve, bridge.TransportSSE, onEnd)
	if err != nil {
		release()
		s.refuse(w, r, err, true)
		return
	}
	ss.ch, ss.sub, ss.ended = ch, sub, sub.Done()
	ss.gapID, ss.gap = sub.Gap()

	setSSEHeaders(w.Header())
	switch took, err := ss.takeOver(r, s.opts.Retry); {
	case err != nil:
		ss.end(s.writeFailed(ss))
	case took && ss.direct:
		s.addDirect(ss)
	case took:
		s.streams.Go(func() {
			defer ss.cutOnClose()()
			reason, _ := s.streamSSE(ss, false)
			ss.end(reason)
		})
	default:
		ss.left = r.Context().Done()
		w.WriteHeader(http.StatusOK)
		if err := ss.write(sse.AppendRetry(nil, s.opts.Retry)); err != nil {
			ss.end(s.writeFailed(ss))
			return
		}
		reason, _ := s.streamSSE(ss, false)
		ss.end(reason)
	}
}

// streamSSE writes the stream from its own goroutine until it ends, and
// returns why. With handBack, it returns caughtUp instead as soon as the
// client has been written everything due, for its shard to take it back.
func (s *Server) streamSSE(ss *session, handBack bool) (reason string, caughtUp bool) {
	sub := ss.sub
	// The heartbeat timer is not reset on every write: when it fires, it is
	// re-armed for what is left of the interval since the last write.
	heartbeat := time.NewTimer(jitter(s.opts.Heartbeat))
	defer heartbeat.Stop()
	for {
		// Nothing due, and the socket has room again: the shard takes over
		// from here, and is nudged to read what comes in between. A socket
		// still well filled stays here, or it would go back and forth.
		if handBack && len(sub.Wake()) == 0 && roomy(ss.fd) {
			return "", true
		}
		var out []byte
		select {
		case <-ss.left:
			return endClientLeft, false
		case <-s.shutdown:
			s.writeShortRetry(ss)
			return endShutdown, false
		case <-sub.Done():
			return s.endSSE(ss, sub.Err()), false
		case <-heartbeat.C:
			if quiet := time.Since(ss.lastWrite); quiet < s.opts.Heartbeat {
				heartbeat.Reset(s.opts.Heartbeat - quiet)
				continue
			}
			if err := ss.write(heartbeatComment); err != nil {
				return s.writeFailed(ss), false
			}
			heartbeat.Reset(s.opts.Heartbeat)
			continue
		case <-sub.Wake():
		}

		ep := eventsPool.Get().(*[]*bridge.Event)
		events, err := sub.Read((*ep)[:0])
		if err != nil {
			*ep = events[:0]
			eventsPool.Put(ep)
			return s.endSSE(ss, err), false
		}
		bp := bufPool.Get().(*[]byte)
		out, batch := ss.appendEvents((*bp)[:0], events)
		clear(events) // the pool must not keep events alive
		*ep = events[:0]
		eventsPool.Put(ep)
		if len(out) > 0 {
			err = ss.write(out)
			if err == nil {
				ss.events += uint64(batch)
				sub.Delivered(batch, len(out))
			}
		}
		*bp = out[:0]
		bufPool.Put(bp)
		if err != nil {
			return s.writeFailed(ss), false
		}
	}
}

// appendEvents appends the SSE form of events to dst, the gap notice first
// if the client is still to be told, and returns it with the number of
// events appended.
func (ss *session) appendEvents(dst []byte, events []*bridge.Event) ([]byte, int) {
	n := 0
	for _, e := range events {
		if e.SSE == nil {
			continue
		}
		if ss.gap && e.ID != "" {
			dst = appendGap(dst, ss.gapID, e.ID)
			ss.gap = false
		}
		dst = append(dst, e.SSE...)
		n++
	}
	return dst, n
}

// writeFailed returns why a stream ends after a failed write: because the
// channel ended the subscription (and expired the write deadline), or
// because the connection broke.
func (s *Server) writeFailed(ss *session) string {
	if err := ss.sub.Err(); err != nil {
		return s.endSSE(ss, err)
	}
	return endWriteError
}

// endSSE ends a stream whose subscription the channel ended with err, and
// returns why. When the channel closed, the client is told to come back
// soon, whichever way the stream noticed.
func (s *Server) endSSE(ss *session, err error) string {
	if errors.Is(err, bridge.ErrClosed) || errors.Is(err, bridge.ErrLost) {
		s.writeShortRetry(ss)
	}
	return endReason(err)
}

// writeShortRetry tells a client whose stream is ending to reconnect soon,
// after a random delay between ShutdownRetry and twice it, so that clients
// do not all come back at once.
func (s *Server) writeShortRetry(ss *session) {
	ss.lastWords(sse.AppendRetry(nil, s.opts.ShutdownRetry+rand.N(s.opts.ShutdownRetry)))
}

func endReason(err error) string {
	switch {
	case errors.Is(err, bridge.ErrSlowClient):
		return endSlow
	case errors.Is(err, bridge.ErrClosed):
		return endClosed
	case errors.Is(err, bridge.ErrLost):
		return endLost
	}
	return endWriteError
}

// appendGap appends the event that tells a resuming client its id was
// unknown and which event follows.
func appendGap(dst []byte, lastID, next string) []byte {
	data, _ := json.Marshal(gapData{lastID, next}) // invalid UTF-8 becomes U+FFFD
	return sse.AppendEvent(dst, "", "gap", data)
}

// gapData is the data of a gap notice.
type gapData struct {
	LastEventID string `json:"lastEventId"`
	Next        string `json:"next"`
}
