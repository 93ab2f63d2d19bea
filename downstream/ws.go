package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
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

// errNoPong ends a connection whose client did not answer a ping within
// the write timeout.
var errNoPong = errors.New("client did not answer a ping")

// wsSession is one WebSocket client.
type wsSession struct {
	c      *websocket.Conn
	sub    *bridge.Subscription
	v1     bool
	events uint64
	bytes  uint64
}

// serveWS serves one WebSocket client; release frees its slot when the
// stream ends, after serveWS returned.
//
// Once the connection is upgraded the handler returns, and net/http frees
// what it held for the connection; the stream goes on in a goroutine of the
// Server's, beside a reader that handles the client's control frames. A
// ping has a goroutine of its own only while it waits for its pong.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, resolve Resolver, release func()) {
	start := time.Now()
	// The subscription is made before the upgrade, so that a refusal is an
	// HTTP status. A slow client may be stuck in a write: cancelling its
	// context makes the write fail now, and drops the connection (the
	// reader's context is the same). A channel that closes does not cancel
	// it: the stream ends with a close handshake, 1001. The context is not
	// the request's, which ends with the handler.
	ctx, cancel := context.WithCancel(context.Background())
	ch, sub, err := s.subscribe(r, resolve, bridge.TransportWebSocket, func(err error) {
		if errors.Is(err, bridge.ErrSlowClient) {
			cancel()
		}
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
	ws := &wsSession{c: c, sub: sub, v1: c.Subprotocol() == SubprotocolV1}
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
		} else {
			cancel()
		}
		return nil
	})
	reason := s.streamWS(ctx, &g, ws, clientMessage)
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

// ping pings the client in a goroutine of g, and reports on done: nil for
// a pong, errNoPong when none came within the write timeout, another error
// when the connection broke or ctx ended.
func (s *Server) ping(ctx context.Context, g *errgroup.Group, c *websocket.Conn, done chan<- error) {
	g.Go(func() error {
		pctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
		defer cancel()
		err := c.Ping(pctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = errNoPong
		}
		done <- err
		return nil
	})
}

// streamWS writes events until the stream ends and returns why. It pings
// the client every heartbeat, one ping at a time, in a goroutine of g.
func (s *Server) streamWS(ctx context.Context, g *errgroup.Group, ws *wsSession, clientMessage <-chan struct{}) string {
	sub := ws.sub
	lastID, gap := sub.Gap()
	heartbeat := time.NewTimer(jitter(s.opts.Heartbeat))
	defer heartbeat.Stop()
	var pong chan error // the ping in flight's; nil when none is
	for {
		select {
		case <-ctx.Done():
			if err := sub.Err(); err != nil {
				return endReason(err)
			}
			return endClientLeft
		case <-clientMessage:
			return endClientMessage
		case <-s.shutdown:
			return endShutdown
		case <-sub.Done():
			return endReason(sub.Err())
		case <-heartbeat.C:
			pong = make(chan error, 1)
			s.ping(ctx, g, ws.c, pong)
			continue
		case err := <-pong:
			pong = nil
			switch {
			case errors.Is(err, errNoPong):
				return endNoPong // the client is not reading: no close handshake
			case err != nil:
				continue // the connection broke or ended: the reader says so
			}
			heartbeat.Reset(s.opts.Heartbeat)
			continue
		case <-sub.Wake():
		}

		ep := eventsPool.Get().(*[]*bridge.Event)
		events, err := sub.Read((*ep)[:0])
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
			for _, e := range events {
				if gap && e.ID != "" && ws.v1 {
					err = ws.write(wctx, websocket.MessageText, gapJSON(lastID, e.ID))
				}
				gap = gap && e.ID == ""
				if err == nil {
					err = ws.writeEvent(wctx, e)
				}
				if err != nil {
					break
				}
			}
			cancel()
		}
		clear(events)
		*ep = events[:0]
		eventsPool.Put(ep)
		if err != nil {
			if sub.Err() != nil {
				return endReason(sub.Err())
			}
			if ctx.Err() != nil {
				return endClientLeft
			}
			return endWriteError
		}
	}
}

// writeEvent sends e as the client asked: the upstream frame unchanged, or
// its ws2sse.v1 JSON. Notices only go to ws2sse.v1 clients.
func (ws *wsSession) writeEvent(ctx context.Context, e *bridge.Event) error {
	switch {
	case ws.v1:
		return ws.write(ctx, websocket.MessageText, e.JSON)
	case e.Notice():
		return nil
	case e.Binary:
		return ws.write(ctx, websocket.MessageBinary, e.Data)
	default:
		return ws.write(ctx, websocket.MessageText, e.Data)
	}
}

func (ws *wsSession) write(ctx context.Context, typ websocket.MessageType, b []byte) error {
	if err := ws.c.Write(ctx, typ, b); err != nil {
		return err
	}
	ws.events++
	ws.bytes += uint64(len(b))
	ws.sub.Delivered(1, len(b))
	return nil
}

func gapJSON(lastID, next string) []byte {
	b, _ := json.Marshal(struct {
		Event string  `json:"event"`
		Data  gapData `json:"data"`
	}{"gap", gapData{lastID, next}})
	return b
}
