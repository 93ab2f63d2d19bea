package config_test

import (
	"errors"
	"fmt"

	"github.com/ws2sse/ws2sse/internal/config"
)

func ExampleParse() {
	src := `
[server]
max_clent = 100

[[channel]]
name = "prices"
path = "/metrics"
url = "wss://feed.example.com/v1/stream"
headers = { Authorization = "Bearer ${FEED_TOKEN}" }
`
	_, err := config.Parse("ws2sse.toml", []byte(src), func(string) (string, bool) { return "", false })
	var cerr *config.Error
	if errors.As(err, &cerr) {
		for _, p := range cerr.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// ws2sse.toml:3: server.max_clent: unknown key
	// ws2sse.toml:7: channel[0].path: "/metrics" is a built-in endpoint
	// ws2sse.toml:9: channel[0].headers.Authorization: environment variable FEED_TOKEN is not set
}
