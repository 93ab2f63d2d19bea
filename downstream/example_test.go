package downstream_test

import (
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/downstream"
	"github.com/ws2sse/ws2sse/upstream"
)

// A channel served at /prices over SSE and WebSocket, to any origin, with
// at most 10,000 clients.
func ExampleServer_Route() {
	log := zerolog.New(os.Stderr)
	ch := bridge.New(bridge.Options{
		Name:     "prices",
		Upstream: upstream.Options{URL: "wss://feed.example.com/v1/stream"},
		Lazy:     true,
		Logger:   log,
	})
	defer ch.Close()

	ds := downstream.New(downstream.Options{
		Heartbeat:   15 * time.Second,
		CORSOrigins: []string{"*"},
		MaxClients:  10000,
		Logger:      log,
	})
	mux := http.NewServeMux()
	mux.Handle("/prices", ds.Route(downstream.Route{
		Name: func(*http.Request) string { return ch.Name() },
		Open: downstream.Static(ch),
	}))
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// On shutdown: end the streams, stop the server, wait for the streams
	// that outlived their handlers.
	srv.RegisterOnShutdown(ds.Shutdown)
	_ = srv // srv.ListenAndServe(), then srv.Shutdown(ctx) and ds.Wait()
}
