package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// liveConn is the life of one connection: a read loop, a heartbeat loop and
// a read-timeout watchdog, of which the first to fail ends all three.
type liveConn struct {
	conn  *websocket.Conn
	raw   io.Closer    // the connection under conn; may be nil
	opts  *Options     // read-only
	start time.Time    // when the connection came up
	last  atomic.Int64 // time.Duration since start of the last frame or pong
}

func newLiveConn(conn *websocket.Conn, raw io.Closer, opts *Options) *liveConn {
	return &liveConn{conn: conn, raw: raw, opts: opts, start: time.Now()}
}

// serve runs the connection's loops until one of them fails or ctx is done,
// waits for all of them and returns the first failure. The connection is
// closed when it returns: with 1001 (going away) if ctx is done.
func (c *liveConn) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	// Reads ignore ctx: cancelling a read drops the connection at once,
	// before closeLoop can say goodbye. closeLoop unblocks them.
	g.Go(func() error { return c.readLoop(context.WithoutCancel(ctx)) })
	g.Go(func() error { return c.heartbeatLoop(gctx) })
	g.Go(func() error { return c.watchdogLoop(gctx) })
	g.Go(func() error { return c.closeLoop(ctx, gctx) })
	return g.Wait()
}

// readLoop hands every data frame to OnFrame, in order; it also reads the
// pongs that heartbeatLoop's Ping waits for. It always returns an error,
// since an upstream that hangs up is a reason to reconnect.
func (c *liveConn) readLoop(ctx context.Context) error {
	for {
		typ, data, err := c.conn.Read(ctx)
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// Read has already sent the close frame with 1009.
				return fmt.Errorf("%w (%d bytes): %w", ErrMessageTooBig, c.opts.MaxMessage, err)
			}
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		c.touch()
		if c.opts.OnFrame != nil {
			c.opts.OnFrame(Frame{Binary: typ == websocket.MessageBinary, Data: data})
		}
	}
}

// heartbeatLoop pings every PingInterval (jittered); a ping without a pong
// within PongTimeout ends the connection.
func (c *liveConn) heartbeatLoop(ctx context.Context) error {
	if c.opts.PingInterval < 0 {
		return nil
	}
	for {
		if !sleep(ctx, jitter(c.opts.PingInterval, c.opts.Rand)) {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, c.opts.PongTimeout)
		err := c.conn.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return nil // the read loop reports why
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w (%s)", ErrPongTimeout, c.opts.PongTimeout)
		case err != nil:
			return fmt.Errorf("failed to ping upstream: %w", err)
		}
		c.touch()
	}
}

// watchdogLoop ends the connection when neither a frame nor a pong arrived
// for ReadTimeout.
func (c *liveConn) watchdogLoop(ctx context.Context) error {
	timeout := c.opts.ReadTimeout
	if timeout < 0 {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		idle := c.idle()
		if idle >= timeout {
			return fmt.Errorf("%w (%s)", ErrReadTimeout, timeout)
		}
		t.Reset(timeout - idle)
	}
}

// closeLoop closes the connection once another loop has failed or ctx is
// done, which unblocks the read loop. On shutdown it says goodbye (1001) and
// waits up to closeGrace for the upstream's answer, then drops the
// connection.
func (c *liveConn) closeLoop(ctx, gctx context.Context) error {
	<-gctx.Done()
	if ctx.Err() == nil {
		c.conn.CloseNow()
		return nil
	}
	if c.raw == nil {
		c.conn.Close(websocket.StatusGoingAway, "") // bounded at 5s by coder/websocket
		return nil
	}

	answered := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(answered)
	wg.Go(func() {
		t := time.NewTimer(closeGrace)
		defer t.Stop()
		select {
		case <-t.C:
			c.raw.Close() // unblocks the close handshake's read
		case <-answered:
		}
	})
	c.conn.Close(websocket.StatusGoingAway, "")
	return nil
}

// touch records activity: a frame or a pong.
func (c *liveConn) touch() {
	c.last.Store(int64(time.Since(c.start)))
}

// idle is the time since the last frame or pong (or since connecting).
func (c *liveConn) idle() time.Duration {
	return time.Since(c.start) - time.Duration(c.last.Load())
}

// jitter returns d ± 10%.
func jitter(d time.Duration, rnd func() float64) time.Duration {
	return d - d/10 + time.Duration(rnd()*float64(d/5))
}
