package bridge_test

import (
	"net/http"
	"os"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/upstream"
)

// A client's stream: resume from the id it saw last, say so if events were
// lost, then write what is queued, batch by batch, until the channel ends
// the subscription.
func ExampleChannel_Subscribe() {
	log := zerolog.New(os.Stderr)
	ch := bridge.New(bridge.Options{
		Name: "prices",
		Upstream: upstream.Options{
			URL:       "wss://feed.example.com/v1/stream",
			Header:    http.Header{"Authorization": {"Bearer " + os.Getenv("FEED_TOKEN")}},
			Subscribe: [][]byte{[]byte(`{"op":"subscribe","args":["prices"]}`)},
		},
		EventField: "type", // {"type":"trade",…} becomes "event: trade"
		Lazy:       true,
		Logger:     log,
	})
	defer ch.Close()

	sub, err := ch.Subscribe(bridge.SubscribeOptions{LastEventID: "1700000000000-0"})
	if err != nil {
		return // the channel is closed
	}
	defer sub.Close()
	if id, gap := sub.Gap(); gap {
		log.Info().Str("last_event_id", id).Msg("events were lost; the replay window follows")
	}

	var events []*bridge.Event
	for {
		select {
		case <-sub.Done():
			log.Info().Err(sub.Err()).Msg("subscription ended") // e.g. bridge.ErrSlowClient
			return
		case <-sub.Wake():
		}
		events, err = sub.Read(events[:0])
		if err != nil {
			return
		}
		for _, e := range events {
			if e.SSE != nil {
				os.Stdout.Write(e.SSE) // "id: …\nevent: trade\ndata: {…}\n\n"
			}
		}
	}
}
