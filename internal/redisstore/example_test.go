package redisstore_test

import (
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/redisstore"
	"github.com/ws2sse/ws2sse/upstream"
)

// Several processes run this with the same Redis: one of them at a time
// connects the feed, and every one serves its events, with the same ids.
func ExampleNew() {
	log := zerolog.New(os.Stderr)
	store, err := redisstore.New(redisstore.Options{
		URL:    os.Getenv("REDIS_URL"), // "redis://localhost:6379/0"
		Logger: log,
	})
	if err != nil {
		return
	}
	defer store.Close() // after the channels

	ch := bridge.New(bridge.Options{
		Name:     "prices",
		Upstream: upstream.Options{URL: "wss://feed.example.com/v1/stream"},
		Store:    store,
		Lease:    5 * time.Second,
		Logger:   log,
	})
	defer ch.Close() // releases the upstream lease: another process takes over at once
}
