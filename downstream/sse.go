package downstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
// most of an idle client's memory. The stream goes on in a goroutine of the
// Server's own, and each batch goes out as exactly one write(2), with no
// chunked framing; the response has no length and ends when the connection
// closes. HTTP/2 streams stay in their handler and use the ResponseWriter.
type session struct {
	timeout time.Duration
	remote  string
	start   time.Time

	// HTTP/2, and HTTP/1 until the connection is taken over.
	w  http.ResponseWriter
	rc *http.ResponseController
	// HTTP/1 once taken over, and then w and rc are nil. Stored before the
	// handler returns; the channel reads it to expire a stuck write.
	conn atomic.Pointer[net.Conn]

	left <-chan struct{} // closed when the client hangs up
	// ended is the subscription's Done channel: once it is closed, write
	// refuses to write. Nil for the last words of a stream.
	ended  <-chan struct{}
	reader sync.WaitGroup // the taken-over connection's reader

	// Owned by the stream's goroutine.
	deadline  time.Time // the write deadline last set; zero forces a new one
	lastWrite time.Time // for heartbeats

	events uint64
	bytes  uint64
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
	ss.left = left
	ss.reader.Go(func() {
		defer close(left)
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	})
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

// stop closes a taken-over connection and waits for its reader.
func (ss *session) stop() {
	if c := ss.conn.Load(); c != nil {
		(*c).Close()
		ss.reader.Wait()
	}
}

func setSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// serveSSE serves one SSE client; release frees its slot when the stream
// ends, possibly after serveSSE returned.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, resolve Resolver, release func()) {
	ss := &session{
		w: w, rc: http.NewResponseController(w), timeout: s.opts.WriteTimeout,
		remote: r.RemoteAddr, start: time.Now(),
	}
	// A slow client may be stuck in a write: expire its deadline so the
	// write fails now and the connection closes. Only on a taken-over
	// connection: on HTTP/2 that would reset the stream under the handler,
	// and before the takeover nothing has been written yet.
	onEnd := func(error) {
		if c := ss.conn.Load(); c != nil {
			_ = (*c).SetWriteDeadline(time.Now())
		}
	}
	ch, sub, err := s.subscribe(r, resolve, bridge.TransportSSE, onEnd)
	if err != nil {
		release()
		s.refuse(w, r, err, true)
		return
	}
	ss.ended = sub.Done()
	end := func(reason string) {
		ss.stop()
		sub.Close()
		release()
		s.log.Info().
			Str("channel", ch.Name()).Str("transport", "sse").Str("remote", ss.remote).
			Dur("duration", time.Since(ss.start)).Uint64("events", ss.events).Uint64("bytes", ss.bytes).
			Str("reason", reason).Msg("client session ended")
	}

	setSSEHeaders(w.Header())
	switch took, err := ss.takeOver(r, s.opts.Retry); {
	case err != nil:
		end(s.writeFailed(ss, sub))
	case took:
		s.streams.Go(func() { end(s.streamSSE(ss, sub)) })
	default:
		ss.left = r.Context().Done()
		w.WriteHeader(http.StatusOK)
		if err := ss.write(sse.AppendRetry(nil, s.opts.Retry)); err != nil {
			end(s.writeFailed(ss, sub))
			return
		}
		end(s.streamSSE(ss, sub))
	}
}

// streamSSE writes the stream until it ends and returns why it ended.
func (s *Server) streamSSE(ss *session, sub *bridge.Subscription) string {
	lastID, gap := sub.Gap()
	// The heartbeat timer is not reset on every write: when it fires, it is
	// re-armed for what is left of the interval since the last write.
	heartbeat := time.NewTimer(jitter(s.opts.Heartbeat))
	defer heartbeat.Stop()
	for {
		var out []byte
		select {
		case <-ss.left:
			return endClientLeft
		case <-s.shutdown:
			s.writeShortRetry(ss)
			return endShutdown
		case <-sub.Done():
			return s.endSSE(ss, sub.Err())
		case <-heartbeat.C:
			if quiet := time.Since(ss.lastWrite); quiet < s.opts.Heartbeat {
				heartbeat.Reset(s.opts.Heartbeat - quiet)
				continue
			}
			if err := ss.write(heartbeatComment); err != nil {
				return s.writeFailed(ss, sub)
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
			return s.endSSE(ss, err)
		}
		bp := bufPool.Get().(*[]byte)
		out = (*bp)[:0]
		batch := 0
		for _, e := range events {
			if e.SSE == nil {
				continue
			}
			if gap && e.ID != "" {
				out = appendGap(out, lastID, e.ID)
				gap = false
			}
			out = append(out, e.SSE...)
			batch++
		}
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
			return s.writeFailed(ss, sub)
		}
	}
}

// writeFailed returns why a stream ends after a failed write: because the
// channel ended the subscription (and expired the write deadline), or
// because the connection broke.
func (s *Server) writeFailed(ss *session, sub *bridge.Subscription) string {
	if err := sub.Err(); err != nil {
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
	ss.ended = nil // the stream's last words go out even after its end
	ss.deadline = time.Time{}
	_ = ss.write(sse.AppendRetry(nil, s.opts.ShutdownRetry+rand.N(s.opts.ShutdownRetry)))
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
