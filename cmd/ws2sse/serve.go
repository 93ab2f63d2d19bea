package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/downstream"
	"github.com/ws2sse/ws2sse/internal/config"
)

// Request header limits: headers must arrive within readHeaderTimeout and
// fit in maxHeaderBytes. net/http reads up to MaxHeaderBytes plus 4 KiB, so
// MaxHeaderBytes is set 4 KiB below the limit.
const (
	readHeaderTimeout = 5 * time.Second
	maxHeaderBytes    = 8 << 10
)

// serve runs the server until ctx is cancelled, then shuts it down within
// the grace period.
func serve(ctx context.Context, cfg *config.Config, demo bool, log zerolog.Logger) error {
	g, ctx := errgroup.WithContext(ctx)
	if demo {
		// The feed outlives the channels, so that shutdown does not look
		// like an upstream failure.
		feedCtx, stopFeed := context.WithCancel(context.Background())
		var fg errgroup.Group
		defer func() { stopFeed(); _ = fg.Wait() }()
		url, err := startDemoFeed(feedCtx, &fg, log)
		if err != nil {
			return err
		}
		if err := addDemoChannel(cfg, url); err != nil {
			return err
		}
	}

	cl, err := startCluster(cfg, log)
	if err != nil {
		return err
	}
	defer cl.close() // after hub.Close: the channels release their leases first
	hub := bridge.NewHub()
	defer hub.Close()
	dopts, err := downstreamOptions(cfg, log)
	if err != nil {
		return err
	}
	ds := downstream.New(dopts)
	router, err := newRouter(cfg, hub, ds, cl, log)
	if err != nil {
		return err
	}

	var tlsConfig *tls.Config
	if cfg.Server.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
		if err != nil {
			return fmt.Errorf("failed to load the TLS certificate: %w", err)
		}
		// HTTP/2 as well: browsers open any number of streams on one
		// connection instead of six connections per origin.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	// Shutdown does not wait for hijacked connections: handlers counts every
	// request being served, and ds.Wait the streams that outlive their
	// handler (WebSocket ones among them), so that each can say goodbye
	// (1001). When the grace runs out, abort cancels every request's
	// context and ds.Close drops the streams, which ends the ones left.
	var handlers gate
	baseCtx, abort := context.WithCancel(context.Background())
	defer abort()
	srv := &http.Server{
		BaseContext: func(net.Listener) context.Context { return baseCtx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !handlers.enter() {
				// A request read after a Shutdown that timed out.
				w.Header().Set("Connection", "close")
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			defer handlers.leave()
			router.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes - 4<<10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(httpErrorLog{log}, "", 0),
		TLSConfig:         tlsConfig,
	}
	srv.RegisterOnShutdown(ds.Shutdown)
	log.Info().Str("addr", ln.Addr().String()).Str("scheme", scheme).Int("channels", len(cfg.Channels)).
		Str("version", versionString()).Msg("ws2sse listening")

	g.Go(func() error {
		serve := srv.Serve
		if tlsConfig != nil {
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("failed to serve: %w", err)
		}
		return nil
	})
	<-ctx.Done()

	// Clients get most of the grace to go; the last fifth (at most a
	// second) is for cutting off the ones left, so that the process is gone
	// within the grace.
	grace := cfg.Server.ShutdownGrace
	log.Info().Dur("grace", grace).Msg("shutting down: closing streams and upstreams")
	deadline := time.Now().Add(grace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace-min(grace/5, time.Second))
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Streams first, each told to reconnect soon, then the upstreams.
		_ = srv.Shutdown(shutdownCtx)
		handlers.closeAndWait()
		ds.Wait()
		hub.Close()
	}()
	select {
	case <-done:
	case <-shutdownCtx.Done():
		log.Warn().Dur("grace", grace).Msg("shutdown grace nearly over; closing remaining connections")
		abort()
		ds.Close()
		srv.Close()
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			log.Warn().Msg("connections still closing at the end of the grace; exiting anyway")
		}
	}
	err = g.Wait()
	log.Info().Msg("ws2sse stopped")
	return err
}
