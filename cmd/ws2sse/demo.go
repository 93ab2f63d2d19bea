package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"github.com/gorilla/mux"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ws2sse/ws2sse/internal/config"
)

// The built-in demo: a WebSocket feed on loopback that publishes made-up
// market data, bridged at /demo.

const (
	demoPath     = "/demo"
	demoInterval = 250 * time.Millisecond
)

// checkDemoChannel reports a configuration that leaves no room for the demo
// channel: a usage error, found when the configuration is loaded. A
// templated path that matches /demo would take its requests.
func checkDemoChannel(cfg *config.Config) error {
	demoReq := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: demoPath}}
	for _, ch := range cfg.Channels {
		if ch.Name == "demo" || mux.NewRouter().Path(ch.Path).Match(demoReq, &mux.RouteMatch{}) {
			return fmt.Errorf("ws2sse: -demo: %s already has a channel named demo or one whose path matches %s (%q)", cfg.File, demoPath, ch.Path)
		}
	}
	return nil
}

// addDemoChannel adds the demo channel, reading the feed at url.
func addDemoChannel(cfg *config.Config, url string) error {
	if err := checkDemoChannel(cfg); err != nil {
		return err
	}
	ch := config.DefaultChannel()
	ch.Name, ch.Path, ch.URL = "demo", demoPath, url
	ch.Lazy = false
	ch.ReplayOnConnect = 5 // a new client sees something at once
	ch.StatusEvents = true
	ch.Upstream = cfg.Upstream
	cfg.Channels = append(cfg.Channels, ch)
	return nil
}

// startDemoFeed serves the demo feed on a loopback port until ctx is
// cancelled, and returns its URL. Its goroutines join g.
func startDemoFeed(ctx context.Context, g *errgroup.Group, log zerolog.Logger) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to start the demo feed: %w", err)
	}
	var conns gate
	srv := &http.Server{
		ReadHeaderTimeout: readHeaderTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !conns.enter() {
				http.Error(w, "demo feed stopping", http.StatusServiceUnavailable)
				return
			}
			defer conns.leave()
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			err = demoFeed(ctx, c)
			if ctx.Err() != nil {
				c.Close(websocket.StatusGoingAway, "demo feed stopping")
			} else if err != nil {
				log.Debug().Err(err).Msg("demo feed connection ended")
			}
		}),
	}
	g.Go(func() error {
		err := srv.Serve(ln)
		conns.closeAndWait()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	return "ws://" + ln.Addr().String() + "/feed", nil
}

// demoFeed writes ticks several times a second, with trades and news among
// them, until ctx is cancelled or the connection fails.
func demoFeed(ctx context.Context, c *websocket.Conn) error {
	// Read to answer pings and notice the close.
	ctx = c.CloseRead(ctx)
	t := time.NewTicker(demoInterval)
	defer t.Stop()
	price := 100.0
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			price = max(1, price*(1+(rand.Float64()-0.5)/200))
			msgs := []any{map[string]any{
				"type": "tick", "seq": n, "symbol": "DEMO",
				"price": round2(price), "time": now.UTC().Format(time.RFC3339Nano),
			}}
			if rand.IntN(3) == 0 {
				side := "buy"
				if rand.IntN(2) == 0 {
					side = "sell"
				}
				msgs = append(msgs, map[string]any{
					"type": "trade", "symbol": "DEMO", "side": side,
					"qty": 1 + rand.IntN(50), "price": round2(price),
				})
			}
			if n%40 == 0 {
				msgs = append(msgs, map[string]any{
					"type":     "news",
					"headline": demoHeadlines[(n/40)%len(demoHeadlines)],
				})
			}
			for _, m := range msgs {
				b, _ := json.Marshal(m)
				if err := c.Write(ctx, websocket.MessageText, b); err != nil {
					return err
				}
			}
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

var demoHeadlines = []string{
	"DEMO Corp opens a new line\nof multi-line headlines",
	"Markets calm; heartbeats steady",
	"Résumé of the day: ünïcödé works 🎉",
}
