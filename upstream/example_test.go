package upstream_test

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/rs/zerolog"
	"github.com/ws2sse/ws2sse/upstream"
)

func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	log := zerolog.New(os.Stderr).With().Timestamp().Str("channel", "prices").Logger()
	err := upstream.Run(ctx, upstream.Options{
		URL:         "wss://feed.example.com/v1/stream",
		Header:      http.Header{"Authorization": {"Bearer " + os.Getenv("FEED_TOKEN")}},
		Subscribe:   [][]byte{[]byte(`{"op":"subscribe","args":["prices"]}`)},
		ReadTimeout: 30 * time.Second,
		Logger:      log,
		OnFrame: func(f upstream.Frame) {
			// Hand f.Data on; it is ours to keep.
		},
		OnState: func(st upstream.Status) {
			if st.State == upstream.StateDown {
				log.Info().Err(st.Err).Dur("retry_in", st.RetryIn).Msg("feed is down")
			}
		},
	})
	if err != nil {
		log.Fatal().Err(err).Msg("bad upstream options")
	}
}
