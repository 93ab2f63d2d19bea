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

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, resolve Resolver) {
	start := time.Now()
	// The subscription is made before the upgrade, so that a refusal is an
	// HTTP status. A slow client may be stuck in a write: cancelling its
	// context makes the write fail now, and drops the connection (the
	// reader's context is the same). A channel that closes does not cancel
	// it: the stream ends with a close handshake, 1001.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, sub, err := s.subscribe(r, resolve, bridge.TransportWebSocket, func(err error) {
		if errors.Is(err, bridge.ErrSlowClient) {
			cancel()
		}
	})
	if err != nil {
		s.refuse(w, r, err, false)
		return
	}
	defer sub.Close()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{SubprotocolV1},
		// The origin was checked against CORSOrigins by the handler.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered the request
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 10) // clients send nothing but control frames

	ws := &wsSession{c: c, sub: sub, v1: c.Subprotocol() == SubprotocolV1}
	readErr := make(chan error, 1)
	pingErr := make(chan error, 1)
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
	g.Go(func() error {
		pingErr <- s.pingLoop(ctx, c)
		cancel()
		return nil
	})
	reason := s.streamWS(ctx, ws, sub, clientMessage)
	select {
	case err := <-pingErr:
		if errors.Is(err, errNoPong) {
			reason = endNoPong // the client is not reading: no close handshake
		}
	default:
	}
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

	s.log.Info().
		Str("channel", ch.Name()).Str("transport", "websocket").Str("remote", r.RemoteAddr).
		Dur("duration", time.Since(start)).Uint64("events", ws.events).Uint64("bytes", ws.bytes).
		Str("reason", reason).Msg("client session ended")
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

// pingLoop pings the client every heartbeat. It returns errNoPong when the
// client did not answer within the write timeout, and nil when ctx is done
// or the connection broke (the reader says why).
func (s *Server) pingLoop(ctx context.Context, c *websocket.Conn) error {
	t := time.NewTimer(jitter(s.opts.Heartbeat))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
		err := c.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			return errNoPong
		case err != nil:
			return nil
		}
		t.Reset(s.opts.Heartbeat)
	}
}

// streamWS writes events until the stream ends and returns why.
func (s *Server) streamWS(ctx context.Context, ws *wsSession, sub *bridge.Subscription, clientMessage <-chan struct{}) string {
	lastID, gap := sub.Gap()
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
