package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/ws2sse/ws2sse/bridge"
)

// SubprotocolV1 makes a WebSocket carry each event as a JSON text message
// {"id":…,"event":…,"data":…}, and gap and upstream notices too, so that
// the client can keep its resume point.
const SubprotocolV1 = "ws2sse.v1"

// errClientMessage ends a connection whose client sent a data message; the
// WebSocket downstream is read-only.
var errClientMessage = errors.New("client sent a message on a read-only stream")

// errWriteTimeout fails a batch whose write timer fired.
var errWriteTimeout = errors.New("write timed out")

// errNoPong ends a connection whose client did not answer a ping within
// the write timeout.
var errNoPong = errors.New("client did not answer a ping")

// wsSession is one WebSocket client.
//
// Its stream waits on two channels only: the subscription's wake, and ctl
// for everything rarer (the client left or sent a message, the channel
// ended the subscription, shutdown, a ping due or answered), whose
// sources nudge it. A select over all of them would lock every one at each
// event, the server's shutdown channel among them, shared by every stream.
type wsSession struct {
	c   *websocket.Conn
	ch  *bridge.Channel
	sub *bridge.Subscription
	v1  bool

	ctl      chan struct{} // capacity 1: something other than events happened
	pingDue  atomic.Bool   // set by the heartbeat timer
	timedOut atomic.Bool   // set when a write took longer than WriteTimeout

	events uint64
	bytes  uint64
}

func (ws *wsSession) nudge() {
	select {
	case ws.ctl <- struct{}{}:
	default:
	}
}

// serveWS serves one WebSocket client; release frees its slot when the
// stream ends, after serveWS returned.
//
// Once the connection is upgraded the handler returns, and net/http frees
// what it held for the connection; the stream goes on in a goroutine of the
// Server's, beside a reader that handles the client's control frames. A
// ping has a goroutine of its own only while it waits for its pong.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, resolve Resolver, release func()) {
	s.streams.Add(1) // Wait covers the handler until it has handed the stream on
	defer s.streams.Done()
	start := time.Now()
	ws := &wsSession{ctl: make(chan struct{}, 1)}
	// The subscription is made before the upgrade, so that a refusal is an
	// HTTP status. A slow client may be stuck in a write: cancelling its
	// context drops the connection (coder/websocket closes it when the
	// reader's context ends), and the write fails now. A channel that
	// closes does not cancel it: the stream ends with a close handshake,
	// 1001. The context is not the request's, which ends with the handler,
	// but the Server's, which Close ends.
	ctx, cancel := context.WithCancel(s.closeCtx)
	ch, sub, err := s.subscribe(r, resolve, bridge.TransportWebSocket, func(err error) {
		if errors.Is(err, bridge.ErrSlowClient) {
			cancel()
		}
		ws.nudge()
	})
	if err != nil {
		cancel()
		release()
		s.refuse(w, r, err, false)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{SubprotocolV1},
		// The origin was checked against CORSOrigins by the handler.
		InsecureSkipVerify: true,
	})
	if err != nil {
		cancel()
		sub.Close()
		release()
		return // Accept has answered the request
	}
	c.SetReadLimit(4 << 10) // clients send nothing but control frames
	ws.c, ws.ch, ws.sub, ws.v1 = c, ch, sub, c.Subprotocol() == SubprotocolV1
	remote := r.RemoteAddr
	s.streams.Go(func() {
		defer release()
		defer sub.Close()
		defer c.CloseNow()
		defer cancel()
		reason := s.runWS(ctx, cancel, ws)
		s.log.Info().
			Str("channel", ch.Name()).Str("transport", "websocket").Str("remote", remote).
			Dur("duration", time.Since(start)).Uint64("events", ws.events).Uint64("bytes", ws.bytes).
			Str("reason", reason).Msg("client session ended")
	})
}

// runWS runs a WebSocket stream and its reader until the stream ends, ends
// it as its reason asks, and returns the reason.
func (s *Server) runWS(ctx context.Context, cancel context.CancelFunc, ws *wsSession) string {
	c := ws.c
	readErr := make(chan error, 1)
	// Closed when the client sent a message. The stream then ends after its
	// current write rather than cancelling it, which would drop the
	// connection before the client is told why (1008).
	clientMessage := make(chan struct{})
	var g errgroup.Group
	g.Go(func() error {
		err := readLoop(ctx, c)
		readErr <- err
		if errors.Is(err, errClientMessage) {
			close(clientMessage)
			ws.nudge()
		} else {
			cancel()
		}
		return nil
	})
	stopCtx := context.AfterFunc(ctx, ws.nudge)
	stopShutdown := context.AfterFunc(s.shutdownCtx, ws.nudge)
	reason := s.streamWS(ctx, &g, ws, clientMessage)
	stopCtx()
	stopShutdown()
	select {
	case err := <-readErr:
		if errors.Is(err, errClientMessage) {
			reason = endClientMessage
			c.Close(websocket.StatusPolicyViolation, "this stream is read-only")
		}
	default:
		// The reader is still running, so the close handshake completes.
		switch reason {
		case endShutdown:
			c.Close(websocket.StatusGoingAway, "server shutting down")
		case endClosed:
			c.Close(websocket.StatusGoingAway, "channel closed")
		case endSlow:
			c.Close(websocket.StatusPolicyViolation, "client too slow")
		}
	}
	cancel()
	_ = g.Wait()
	return reason
}

// readLoop reads until the connection ends; control frames are handled
// inside Read. A data message ends it with errClientMessage.
func readLoop(ctx context.Context, c *websocket.Conn) error {
	_, _, err := c.Reader(ctx)
	if err == nil {
		return errClientMessage
	}
	return nil
}

// ping pings the client in a goroutine of g, and reports on done, then
// nudges ws: nil for a pong, errNoPong when none came within the write
// timeout, another error when the connection broke or ctx ended.
func (s *Server) ping(ctx context.Context, g *errgroup.Group, ws *wsSession, done chan<- error) {
	g.Go(func() error {
		pctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
		defer cancel()
		err := ws.c.Ping(pctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = errNoPong
		}
		done <- err
		ws.nudge()
		return nil
	})
}

// streamWS writes events until the stream ends and returns why. It pings
// the client every heartbeat, one ping at a time, in a goroutine of g.
//
// Writes have no context: a context with a deadline costs a timer and two
// registrations per write. One timer of the stream's bounds each batch
// instead, and closes the connection when it runs out.
func (s *Server) streamWS(ctx context.Context, g *errgroup.Group, ws *wsSession, clientMessage <-chan struct{}) string {
	sub := ws.sub
	lastID, gap := sub.Gap()
	heartbeat := time.AfterFunc(jitter(s.opts.Heartbeat), func() {
		ws.pingDue.Store(true)
		ws.nudge()
	})
	defer heartbeat.Stop()
	writeTimer := time.AfterFunc(time.Hour, func() {
		ws.timedOut.Store(true)
		ws.c.CloseNow()
	})
	writeTimer.Stop()
	defer writeTimer.Stop()
	var pong chan error // the ping in flight's; nil when none is
	for {
		select {
		case <-sub.Wake():
		case <-ws.ctl:
			if reason := s.wsControl(ctx, ws, clientMessage); reason != "" {
				return reason
			}
			if pong != nil {
				select {
				case err := <-pong:
					pong = nil
					switch {
					case errors.Is(err, errNoPong):
						return endNoPong // the client is not reading: no close handshake
					case err == nil:
						heartbeat.Reset(s.opts.Heartbeat)
					}
					// Otherwise the connection broke or ended: the reader
					// says so.
				default:
				}
			}
			if pong == nil && ws.pingDue.Swap(false) {
				pong = make(chan error, 1)
				s.ping(ctx, g, ws, pong)
			}
			continue // events due still have their wake
		}

		ep := eventsPool.Get().(*[]*bridge.Event)
		events, err := sub.Read((*ep)[:0])
		if err == nil && len(events) > 0 {
			writeTimer.Reset(s.opts.WriteTimeout)
			n, bytes := ws.events, ws.bytes
			for _, e := range events {
				if gap && e.ID != "" && ws.v1 {
					err = ws.write(websocket.MessageText, gapJSON(lastID, e.ID))
				}
				gap = gap && e.ID == ""
				if err == nil {
					err = ws.writeEvent(e)
				}
				if err != nil {
					break
				}
			}
			if !writeTimer.Stop() && err == nil {
				err = errWriteTimeout // it fired as the batch ended: the connection is closing
			}
			m := int(ws.events - n) // each message is a write of its own
			ws.ch.Delivered(bridge.TransportWebSocket, m, m, int(ws.bytes-bytes))
		}
		clear(events)
		*ep = events[:0]
		eventsPool.Put(ep)
		if err != nil {
			if reason := s.wsControl(ctx, ws, nil); reason != "" {
				return reason
			}
			return endWriteError
		}
	}
}

// wsControl returns why the stream must end, if it must: once ctl was
// nudged, or a write failed. The causes are looked at before the context,
// which most of them end too (the connection closes, the reader fails).
func (s *Server) wsControl(ctx context.Context, ws *wsSession, clientMessage <-chan struct{}) string {
	select {
	case <-clientMessage:
		return endClientMessage
	default:
	}
	if err := ws.sub.Err(); err != nil {
		return endReason(err)
	}
	if ws.timedOut.Load() {
		return endWriteError
	}
	select {
	case <-s.shutdown:
		return endShutdown
	default:
	}
	if ctx.Err() != nil {
		return endClientLeft
	}
	return ""
}

// writeEvent sends e as the client asked: the upstream frame unchanged, or
// its ws2sse.v1 JSON. Notices only go to ws2sse.v1 clients.
func (ws *wsSession) writeEvent(e *bridge.Event) error {
	switch {
	case ws.v1:
		return ws.write(websocket.MessageText, e.JSON)
	case e.Notice():
		return nil
	case e.Binary:
		return ws.write(websocket.MessageBinary, e.Data)
	default:
		return ws.write(websocket.MessageText, e.Data)
	}
}

// write sends one message; the caller bounds it with the write timer.
func (ws *wsSession) write(typ websocket.MessageType, b []byte) error {
	if err := ws.c.Write(context.Background(), typ, b); err != nil {
		return err
	}
	ws.events++
	ws.bytes += uint64(len(b))
	return nil
}

func gapJSON(lastID, next string) []byte {
	b, _ := json.Marshal(struct {
		Event string  `json:"event"`
		Data  gapData `json:"data"`
	}{"gap", gapData{lastID, next}})
	return b
}
