//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// payloadSize is the size of every event the feed publishes.
const payloadSize = 256

// feed is the upstream: a WebSocket server with one feed per channel at
// /feed/N. Each feed publishes at a set rate to every connection it has; an
// event is a JSON object of payloadSize bytes carrying the channel, a
// sequence number from 1 and its send time in unix nanoseconds, stamped
// just before it is written. The feed keeps every send time, so that what
// was published within a window can be counted afterwards.
type feed struct {
	srv   *http.Server
	ln    net.Listener
	chans []*feedChan
	rate  float64
	wg    sync.WaitGroup
	stop  context.CancelFunc
}

type feedChan struct {
	n     int
	mu    sync.Mutex
	conns map[*websocket.Conn]struct{} // guarded by mu
	made  int                          // connections accepted; guarded by mu
	sent  []int64                      // send times in publication order; guarded by mu
}

// startFeed serves channels feeds on a loopback port, each publishing rate
// events per second (none when rate is 0), phases spread over one period.
func startFeed(channels int, rate float64) (*feed, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the feed: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &feed{ln: ln, rate: rate, stop: cancel}
	for i := range channels {
		f.chans = append(f.chans, &feedChan{n: i, conns: map[*websocket.Conn]struct{}{}})
	}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serveWS), ReadHeaderTimeout: 5 * time.Second}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln)
	}()
	if rate > 0 {
		period := time.Duration(float64(time.Second) / rate)
		for _, c := range f.chans {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.publishLoop(ctx, c, period, period*time.Duration(c.n)/time.Duration(channels))
			}()
		}
	}
	return f, nil
}

// URL returns the WebSocket URL of feed n.
func (f *feed) URL(n int) string { return fmt.Sprintf("ws://%s/feed/%d", f.ln.Addr(), n) }

func (f *feed) serveWS(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/feed/"))
	if err != nil || n < 0 || n >= len(f.chans) {
		http.NotFound(w, r)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	fc := f.chans[n]
	fc.mu.Lock()
	fc.conns[c] = struct{}{}
	fc.made++
	fc.mu.Unlock()
	// Read until the peer goes: this answers its pings and sees its close.
	_, _, _ = c.Reader(r.Context())
	fc.mu.Lock()
	delete(fc.conns, c)
	fc.mu.Unlock()
	c.CloseNow()
}

// publishLoop publishes one event per period after an initial delay,
// until ctx is done.
func (f *feed) publishLoop(ctx context.Context, c *feedChan, period, phase time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(phase):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	buf := make([]byte, 0, payloadSize)
	var conns []*websocket.Conn
	for seq := int64(1); ; seq++ {
		c.mu.Lock()
		conns = conns[:0]
		for wc := range c.conns {
			conns = append(conns, wc)
		}
		now := time.Now().UnixNano()
		c.sent = append(c.sent, now)
		c.mu.Unlock()
		buf = appendPayload(buf[:0], c.n, seq, now)
		for _, wc := range conns {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := wc.Write(wctx, websocket.MessageText, buf); err != nil && !errors.Is(err, context.Canceled) {
				wc.CloseNow()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// appendPayload appends an event of exactly payloadSize bytes.
func appendPayload(dst []byte, ch int, seq, sent int64) []byte {
	start := len(dst)
	dst = fmt.Appendf(dst, `{"seq":%d,"sent":%d,"ch":%d,"pad":"`, seq, sent, ch)
	for len(dst)-start < payloadSize-2 {
		dst = append(dst, 'x')
	}
	return append(dst, '"', '}')
}

// published returns how many events channel n sent within [from, to).
func (f *feed) published(n int, from, to int64) int64 {
	c := f.chans[n]
	c.mu.Lock()
	defer c.mu.Unlock()
	var k int64
	for _, t := range c.sent {
		if t >= from && t < to {
			k++
		}
	}
	return k
}

// Close stops publishing and closes every connection.
func (f *feed) Close() {
	f.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	for _, c := range f.chans {
		c.mu.Lock()
		for wc := range c.conns {
			wc.CloseNow()
		}
		c.mu.Unlock()
	}
	_ = f.srv.Close()
	f.wg.Wait()
}

// connections returns how many connections feed n has accepted, and how
// many are open.
func (f *feed) connections(n int) (made, open int) {
	c := f.chans[n]
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made, len(c.conns)
}
