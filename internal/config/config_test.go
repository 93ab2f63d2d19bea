package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// load writes src to ws2sse.toml in a new working directory and loads it
// with env set, so that problems name the file as a user would see it.
func load(t *testing.T, src string, env map[string]string) (*Config, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	for k, v := range env {
		t.Setenv(k, v)
	}
	if err := os.WriteFile("ws2sse.toml", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load("ws2sse.toml")
}

// problems returns the lines of an *Error.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got error %v (%T), want *Error", err, err)
	}
	return strings.Split(cerr.Error(), "\n")
}

// channel is a valid [[channel]] entry to build test files with.
const channel = `[[channel]]
name = "prices"
path = "/prices"
url = "wss://feed.example.com/v1"
`

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string
	}{
		{
			name: "unknown key",
			src:  "[server]\nmax_clent = 5\n",
			want: []string{"ws2sse.toml:2: server.max_clent: unknown key"},
		},
		{
			name: "unknown keys are case-sensitive",
			src:  "[server]\nListen = \":80\"\n",
			want: []string{"ws2sse.toml:2: server.Listen: unknown key"},
		},
		{
			name: "unknown table",
			src:  "[clustr]\nredis = \"redis://localhost:6379/0\"\n",
			want: []string{"ws2sse.toml:1: clustr: unknown key"},
		},
		{
			name: "unknown dotted key",
			src:  "server.listen = \":80\"\nserver.lisen = \":81\"\n",
			want: []string{"ws2sse.toml:2: server.lisen: unknown key"},
		},
		{
			name: "unknown quoted key",
			src:  "[downstream]\n\"heart beat\" = \"1s\"\n",
			want: []string{`ws2sse.toml:2: downstream."heart beat": unknown key`},
		},
		{
			name: "unknown keys in channels",
			src:  channel + "urll = \"x\"\n\n[[channel]]\nname = \"b\"\npath = \"/b\"\nurl = \"ws://b\"\n\n[channel.upstream]\nping = \"1s\"\n",
			want: []string{
				"ws2sse.toml:5: channel[0].urll: unknown key",
				"ws2sse.toml:13: channel[1].upstream.ping: unknown key",
			},
		},
		{
			name: "integer expected",
			src:  "[server]\nmax_clients = \"10\"\n",
			want: []string{"ws2sse.toml:2: server.max_clients: expected an integer, got a string"},
		},
		{
			name: "float for an integer",
			src:  "[downstream]\nqueue = 1e3\n",
			want: []string{"ws2sse.toml:2: downstream.queue: expected an integer, got a float"},
		},
		{
			name: "boolean expected",
			src:  "[server]\ndashboard = \"false\"\n",
			want: []string{"ws2sse.toml:2: server.dashboard: expected a boolean (true or false), got a string"},
		},
		{
			name: "string expected",
			src:  "[server]\nlisten = 8080\n",
			want: []string{"ws2sse.toml:2: server.listen: expected a string, got an integer"},
		},
		{
			name: "array expected",
			src:  "[server]\ncors_origins = \"*\"\n",
			want: []string{"ws2sse.toml:2: server.cors_origins: expected an array of strings, got a string"},
		},
		{
			name: "array element",
			src:  "[server]\ncors_origins = [\n  \"https://a.example\",\n  42,\n]\n",
			want: []string{"ws2sse.toml:4: server.cors_origins[1]: expected a string, got an integer"},
		},
		{
			name: "table expected",
			src:  "server = \":8080\"\n",
			want: []string{"ws2sse.toml:1: server: expected a table, got a string"},
		},
		{
			name: "array of tables expected",
			src:  "[channel]\nname = \"a\"\n",
			want: []string{"ws2sse.toml:1: channel: expected an array of tables ([[channel]]), got a table"},
		},
		{
			name: "date for a duration",
			src:  "[downstream]\nheartbeat = 1979-05-27\n",
			want: []string{`ws2sse.toml:2: downstream.heartbeat: expected a duration string like "15s", got a date`},
		},
		{
			name: "bad duration",
			src:  "[downstream]\nheartbeat = \"15 s\"\n",
			want: []string{`ws2sse.toml:2: downstream.heartbeat: bad duration "15 s": expected a number and a unit (ns, us, ms, s, m, h), like "15s"`},
		},
		{
			name: "duration without unit",
			src:  "[server]\nshutdown_grace = \"10\"\n",
			want: []string{`ws2sse.toml:2: server.shutdown_grace: bad duration "10": expected a number and a unit (ns, us, ms, s, m, h), like "15s"`},
		},
		{
			name: "negative duration",
			src:  "[downstream]\nretry = \"-1s\"\n",
			want: []string{`ws2sse.toml:2: downstream.retry: bad duration "-1s": must not be negative`},
		},
		{
			name: "integer for a duration",
			src:  "[upstream]\nread_timeout = 60\n",
			want: []string{`ws2sse.toml:2: upstream.read_timeout: expected a duration string like "15s", got an integer`},
		},
		{
			name: "zero where a duration must be positive",
			src:  "[downstream]\nheartbeat = \"0s\"\nwrite_timeout = \"0s\"\n[upstream]\nbackoff_min = \"0s\"\n",
			want: []string{
				"ws2sse.toml:2: downstream.heartbeat: must be more than 0s",
				"ws2sse.toml:3: downstream.write_timeout: must be more than 0s",
				"ws2sse.toml:5: upstream.backoff_min: must be more than 0s",
			},
		},
		{
			name: "bad size",
			src:  "[upstream]\nmax_message = \"1MB\"\n",
			want: []string{`ws2sse.toml:2: upstream.max_message: bad size "1MB": expected a number of bytes with an optional unit B, KiB, MiB or GiB, like "1MiB"`},
		},
		{
			name: "size too large",
			src:  "[upstream]\nmax_message = \"99999999999GiB\"\n",
			want: []string{`ws2sse.toml:2: upstream.max_message: bad size "99999999999GiB": expected a number of bytes with an optional unit B, KiB, MiB or GiB, like "1MiB"`},
		},
		{
			name: "zero size",
			src:  "[upstream]\nmax_message = 0\n",
			want: []string{"ws2sse.toml:2: upstream.max_message: must be more than 0 bytes"},
		},
		{
			name: "float size",
			src:  "[upstream]\nmax_message = 1.5\n",
			want: []string{`ws2sse.toml:2: upstream.max_message: expected a size (a number of bytes, or a string like "1MiB"), got a float`},
		},
		{
			name: "enums",
			src:  "[server]\noverload = \"drop\"\n" + channel + "binary = \"hex\"\n",
			want: []string{
				`ws2sse.toml:2: server.overload: must be "retry" or "reject", not "drop"`,
				`ws2sse.toml:7: channel[0].binary: must be "base64" or "drop", not "hex"`,
			},
		},
		{
			name: "integer bounds",
			src: "[server]\nmax_clients = 0\nmax_clients_per_ip = -1\n[downstream]\nqueue = 0\n" +
				channel + "replay = -5\nmax_channels = 0\n",
			want: []string{
				"ws2sse.toml:2: server.max_clients: must be at least 1, got 0",
				"ws2sse.toml:3: server.max_clients_per_ip: must not be negative, got -1",
				"ws2sse.toml:5: downstream.queue: must be at least 1, got 0",
				"ws2sse.toml:10: channel[0].replay: must not be negative, got -5",
				"ws2sse.toml:11: channel[0].max_channels: must be at least 1, got 0",
			},
		},
		{
			name: "trusted proxies",
			src:  "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\", \"::1\"]\n",
			want: []string{`ws2sse.toml:2: server.trusted_proxies[1]: want an IP address or a CIDR prefix like "10.0.0.0/8", not "proxy.local"`},
		},
		{
			name: "replay_on_connect over replay",
			src:  channel + "replay = 10\nreplay_on_connect = 11\n",
			want: []string{"ws2sse.toml:6: channel[0].replay_on_connect: replay_on_connect (11) must not be more than replay (10)"},
		},
		{
			name: "backoff_min over backoff_max",
			src:  "[upstream]\nbackoff_max = \"100ms\"\n",
			want: []string{"ws2sse.toml:2: upstream.backoff_max: backoff_min (250ms) must not be more than backoff_max (100ms)"},
		},
		{
			name: "pong_timeout not under ping_interval",
			src:  "[upstream]\nping_interval = \"5s\"\n" + channel + "[channel.upstream]\npong_timeout = \"0s\"\n",
			want: []string{
				"ws2sse.toml:2: upstream.ping_interval: pong_timeout (5s) must be less than ping_interval (5s)",
				"ws2sse.toml:8: channel[0].upstream.pong_timeout: pong_timeout must be more than 0s while pings are on",
			},
		},
		{
			name: "listen",
			src:  "[server]\nlisten = \"localhost\"\n",
			want: []string{`ws2sse.toml:2: server.listen: must be host:port, like ":8080" or "127.0.0.1:8080", not "localhost"`},
		},
		{
			name: "listen port",
			src:  "[server]\nlisten = \":99999\"\n",
			want: []string{`ws2sse.toml:2: server.listen: must be host:port, like ":8080" or "127.0.0.1:8080", not ":99999"`},
		},
		{
			name: "tls_key without tls_cert",
			src:  "[server]\ntls_key = \"key.pem\"\n",
			want: []string{"ws2sse.toml:2: server.tls_key: tls_cert must be set too"},
		},
		{
			name: "empty origin",
			src:  "[server]\ncors_origins = [\"\"]\n",
			want: []string{"ws2sse.toml:2: server.cors_origins[0]: empty origin"},
		},
		{
			name: "both JWT keys",
			src:  "[auth]\njwt_secret = \"s\"\njwt_public_key = \"key.pem\"\n",
			want: []string{"ws2sse.toml:3: auth.jwt_public_key: set jwt_secret or jwt_public_key, not both"},
		},
		{
			name: "empty auth",
			src:  "[auth]\ntokens = []\n",
			want: []string{"ws2sse.toml:1: auth: no tokens, jwt_secret or jwt_public_key: only public channels could be opened"},
		},
		{
			name: "bad tokens",
			src:  "[auth]\ntokens = [\"\", \"a b\", \"${WS2SSE_TEST_EMPTY}\"]\n",
			env:  map[string]string{"WS2SSE_TEST_EMPTY": ""},
			want: []string{
				"ws2sse.toml:2: auth.tokens[0]: empty token",
				"ws2sse.toml:2: auth.tokens[1]: a token must not contain spaces or control characters",
				"ws2sse.toml:2: auth.tokens[2]: empty token",
			},
		},
		{
			name: "unset environment variables",
			src: "[auth]\ntokens = [\"${WS2SSE_TEST_UNSET_A}\"]\n" + channel +
				"headers = { Authorization = \"Bearer ${WS2SSE_TEST_UNSET_B}\" }\n",
			want: []string{
				"ws2sse.toml:2: auth.tokens[0]: environment variable WS2SSE_TEST_UNSET_A is not set",
				"ws2sse.toml:7: channel[0].headers.Authorization: environment variable WS2SSE_TEST_UNSET_B is not set",
			},
		},
		{
			name: "a value from the environment is never shown",
			src:  "[server]\nshutdown_grace = \"${WS2SSE_TEST_GRACE}\"\n",
			env:  map[string]string{"WS2SSE_TEST_GRACE": "hunter2"},
			want: []string{`ws2sse.toml:2: server.shutdown_grace: bad duration "${WS2SSE_TEST_GRACE}" (after expansion): expected a number and a unit (ns, us, ms, s, m, h), like "15s"`},
		},
		{
			name: "channel required keys",
			src:  "[[channel]]\npublic = true\n",
			want: []string{
				"ws2sse.toml:1: channel[0].name: missing: every channel needs a name",
				"ws2sse.toml:1: channel[0].path: missing: every channel needs a path",
				"ws2sse.toml:1: channel[0].url: missing: every channel needs a ws:// or wss:// URL",
			},
		},
		{
			name: "channel name",
			src:  "[[channel]]\nname = \"a b\"\npath = \"/a\"\nurl = \"ws://a\"\n",
			want: []string{`ws2sse.toml:2: channel[0].name: "a b" is not a valid name: use 1 to 64 of A-Z a-z 0-9 . _ -`},
		},
		{
			name: "duplicate name",
			src:  channel + "\n" + strings.Replace(channel, "/prices", "/prices2", 1),
			want: []string{`ws2sse.toml:7: channel[1].name: "prices" is already the name of the channel on line 2`},
		},
		{
			name: "duplicate path",
			src:  channel + "\n" + strings.Replace(channel, `"prices"`, `"prices2"`, 1),
			want: []string{`ws2sse.toml:8: channel[1].path: "/prices" is already used by channel "prices" (line 3)`},
		},
		{
			name: "paths equal but for their variables",
			src: "[[channel]]\nname = \"a\"\npath = \"/t/{a}\"\nurl = \"ws://x/{a}\"\n" +
				"[[channel]]\nname = \"b\"\npath = \"/t/{b:[0-9]+}\"\nurl = \"ws://x/{b}\"\n",
			want: []string{`ws2sse.toml:7: channel[1].path: "/t/{b:[0-9]+}" is the same path as "/t/{a}" of channel "a" (line 3)`},
		},
		{
			name: "literal path matched by an earlier template",
			src: "[[channel]]\nname = \"t\"\npath = \"/t/{sym:[a-z]+}\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"btc\"\npath = \"/t/btc\"\nurl = \"ws://x\"\n",
			want: []string{`ws2sse.toml:7: channel[1].path: "/t/btc" is also matched by "/t/{sym:[a-z]+}" of channel "t" (line 3)`},
		},
		{
			name: "template matching an earlier literal path",
			src: "[[channel]]\nname = \"btc\"\npath = \"/t/btc\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"t\"\npath = \"/t/{sym}\"\nurl = \"ws://x\"\n",
			want: []string{`ws2sse.toml:7: channel[1].path: "/t/{sym}" also matches "/t/btc" of channel "btc" (line 3)`},
		},
		{
			name: "bad paths",
			src: "[[channel]]\nname = \"a\"\npath = \"a\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"b\"\npath = \"/b/{x\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"c\"\npath = \"/c/{x:[a-z}\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"d\"\npath = \"/d/{x}/{x}\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"e\"\npath = \"/e?x=1\"\nurl = \"ws://x\"\n",
			want: []string{
				`ws2sse.toml:3: channel[0].path: "a" must start with /`,
				`ws2sse.toml:7: channel[1].path: bad path template "/b/{x": unbalanced braces`,
				"ws2sse.toml:11: channel[2].path: bad path template \"/c/{x:[a-z}\": error parsing regexp: missing closing ]: `[a-z$`",
				`ws2sse.toml:15: channel[3].path: bad path template "/d/{x}/{x}": variable "x" appears twice`,
				`ws2sse.toml:19: channel[4].path: "/e?x=1" must not contain ? or #`,
			},
		},
		{
			name: "built-in endpoints",
			src: "[[channel]]\nname = \"a\"\npath = \"/metrics\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"b\"\npath = \"/healthz/x\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"c\"\npath = \"/{any:.*}\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"d\"\npath = \"/\"\nurl = \"ws://x\"\n" +
				"[[channel]]\nname = \"e\"\npath = \"/channels/{id}\"\nurl = \"ws://x\"\n",
			want: []string{
				`ws2sse.toml:3: channel[0].path: "/metrics" is a built-in endpoint`,
				`ws2sse.toml:7: channel[1].path: "/healthz/x" is under the built-in endpoint "/healthz"`,
				`ws2sse.toml:11: channel[2].path: "/{any:.*}" matches the built-in endpoint "/healthz"`,
				`ws2sse.toml:15: channel[3].path: "/" is the dashboard; set server.dashboard = false to use it`,
				`ws2sse.toml:19: channel[4].path: "/channels/{id}" is under the built-in endpoint "/channels"`,
			},
		},
		{
			name: "dashboard files",
			src:  "[[channel]]\nname = \"a\"\npath = \"/app.js\"\nurl = \"ws://x\"\n",
			want: []string{`ws2sse.toml:3: channel[0].path: "/app.js" is a file of the dashboard; set server.dashboard = false to use it`},
		},
		{
			name: "template matching the dashboard",
			src:  "[[channel]]\nname = \"a\"\npath = \"/{p:[0-9]*}\"\nurl = \"ws://x\"\n",
			want: []string{`ws2sse.toml:3: channel[0].path: "/{p:[0-9]*}" matches "/", the dashboard; set server.dashboard = false to use it`},
		},
		{
			name: "urls",
			src: "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"https://x/\"\n" +
				"[[channel]]\nname = \"b\"\npath = \"/b\"\nurl = \"feed.example.com\"\n" +
				"[[channel]]\nname = \"c\"\npath = \"/c\"\nurl = \"wss:///v1\"\n" +
				"[[channel]]\nname = \"d\"\npath = \"/d\"\nurl = \"wss://x/v1#top\"\n" +
				"[[channel]]\nname = \"e\"\npath = \"/e\"\nurl = \"wss://x y/\"\n",
			want: []string{
				`ws2sse.toml:4: channel[0].url: the scheme must be ws or wss, not "https"`,
				"ws2sse.toml:8: channel[1].url: missing scheme: the URL must start with ws:// or wss://",
				"ws2sse.toml:12: channel[2].url: missing host",
				"ws2sse.toml:16: channel[3].url: a WebSocket URL must not have a #fragment",
				`ws2sse.toml:20: channel[4].url: not a valid URL: invalid character " " in host name`,
			},
		},
		{
			name: "a URL from the environment is never shown",
			src:  "[[channel]]\nname = \"a\"\npath = \"/a\"\nurl = \"${WS2SSE_TEST_URL}\"\n",
			env:  map[string]string{"WS2SSE_TEST_URL": "https://user:hunter2@x y/"},
			want: []string{"ws2sse.toml:4: channel[0].url: not a valid URL"},
		},
		{
			name: "placeholders",
			src: "[[channel]]\nname = \"t\"\npath = \"/t/{symbol:[a-z]{1,12}}\"\n" +
				"url = \"wss://x/ws/{symbol}/{sym}\"\n" +
				"subscribe = [\n  '{\"op\":\"sub\",\"args\":[\"{symbol}\"]}',\n  'SUB {market} {market}',\n]\n",
			want: []string{
				`ws2sse.toml:4: channel[0].url: {sym} is not a variable of the path "/t/{symbol:[a-z]{1,12}}"`,
				`ws2sse.toml:7: channel[0].subscribe[1]: {market} is not a variable of the path "/t/{symbol:[a-z]{1,12}}"`,
			},
		},
		{
			name: "placeholder from the environment",
			src:  channel + "subscribe = [\"${WS2SSE_TEST_FRAME}\"]\n",
			env:  map[string]string{"WS2SSE_TEST_FRAME": "{secret}"},
			want: []string{`ws2sse.toml:5: channel[0].subscribe[0]: an environment variable puts a {placeholder} in it that is not a variable of the path "/prices"`},
		},
		{
			name: "templated path must be lazy",
			src:  "[[channel]]\nname = \"t\"\npath = \"/t/{s}\"\nurl = \"ws://x/{s}\"\nlazy = false\n",
			want: []string{"ws2sse.toml:5: channel[0].lazy: must be true for a templated path, whose channels open on demand"},
		},
		{
			name: "headers",
			src:  channel + "headers = { \"X Y\" = \"1\", Sec-WebSocket-Protocol = \"v1\", X-Key = \"a\", x-key = \"b\", X-Num = 1, X-Env = \"${WS2SSE_TEST_NL}\" }\n",
			env:  map[string]string{"WS2SSE_TEST_NL": "a\r\nInjected: 1"},
			want: []string{
				"ws2sse.toml:5: channel[0].headers.Sec-WebSocket-Protocol: cannot be set: use subprotocols instead",
				`ws2sse.toml:5: channel[0].headers."X Y": not a valid header name`,
				"ws2sse.toml:5: channel[0].headers.X-Env: the value must not contain control characters",
				"ws2sse.toml:5: channel[0].headers.X-Num: expected a string, got an integer",
				"ws2sse.toml:5: channel[0].headers.x-key: the same header as X-Key",
			},
		},
		{
			name: "subprotocols",
			src:  channel + "subprotocols = [\"v1.json\", \"a,b\"]\n",
			want: []string{`ws2sse.toml:5: channel[0].subprotocols[1]: "a,b" is not a valid subprotocol name`},
		},
		{
			name: "event_field",
			src:  channel + "event_field = \"/data/~2\"\n",
			want: []string{`ws2sse.toml:5: channel[0].event_field: bad JSON pointer "/data/~2": "~" must be followed by 0 or 1`},
		},
		{
			name: "channel entries written inline",
			src:  "channel = [\n  { name = \"a\", path = \"/a\", url = \"ws://a\" },\n  { name = \"b\", path = \"/b\", url = \"http://b\" },\n]\n",
			want: []string{`ws2sse.toml:3: channel[1].url: the scheme must be ws or wss, not "http"`},
		},
		{
			name: "many problems at once, in line order",
			src: "[server]\nmax_clent = 5\nmax_clients = \"many\"\n\n[upstream]\nping_interval = \"15 s\"\n\n" +
				"[[channel]]\nname = \"prices\"\npath = \"/prices\"\nurl = \"wss://x/{sym}\"\n\n" +
				"[[channel]]\nname = \"prices\"\npath = \"/prices\"\nurl = \"ftp://x\"\n",
			want: []string{
				"ws2sse.toml:2: server.max_clent: unknown key",
				"ws2sse.toml:3: server.max_clients: expected an integer, got a string",
				`ws2sse.toml:6: upstream.ping_interval: bad duration "15 s": expected a number and a unit (ns, us, ms, s, m, h), like "15s"`,
				`ws2sse.toml:11: channel[0].url: {sym} is not a variable of the path "/prices"`,
				`ws2sse.toml:14: channel[1].name: "prices" is already the name of the channel on line 9`,
				`ws2sse.toml:15: channel[1].path: "/prices" is already used by channel "prices" (line 10)`,
				`ws2sse.toml:16: channel[1].url: the scheme must be ws or wss, not "ftp"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.src, tt.env)
			if cfg != nil {
				t.Errorf("got a config with the problems")
			}
			got := problems(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, v := range tt.env {
				if len(v) > 1 && strings.Contains(err.Error(), v) {
					t.Errorf("the value of an environment variable is in the error: %q", err)
				}
			}
		})
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		name, src, prefix string
	}{
		{"unclosed table", "[server]\nlisten = \":80\"\n[downstream\n", "ws2sse.toml:3: syntax error: "},
		{"duplicate key", "[server]\nlisten = \":80\"\nlisten = \":81\"\n", "ws2sse.toml:3: syntax error: "},
		{"bad value", "[server]\nmax_clients = ten\n", "ws2sse.toml:2: syntax error: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.src, nil)
			got := problems(t, err)
			if len(got) != 1 || !strings.HasPrefix(got[0], tt.prefix) || len(got[0]) == len(tt.prefix) {
				t.Errorf("got %q, want one line starting with %q", got, tt.prefix)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, channel, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File = "ws2sse.toml"
	c := DefaultChannel()
	c.Name, c.Path, c.URL, c.Line = "prices", "/prices", "wss://feed.example.com/v1", 1
	want.Channels = []Channel{c}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}

	// The documented defaults, spelled out once.
	s := cfg.Server
	if s.Listen != ":8080" || s.CORSOrigins != nil || s.MaxClients != 10000 || s.MaxClientsPerIP != 0 ||
		s.Overload != "retry" || s.ShutdownGrace != 10*time.Second || !s.Dashboard || s.TLSCert != "" || s.TLSKey != "" {
		t.Errorf("server: %+v", s)
	}
	if cfg.Auth != nil {
		t.Errorf("auth: %+v, want nil", cfg.Auth)
	}
	if d := cfg.Downstream; d != (Downstream{Heartbeat: 15 * time.Second, Retry: 2 * time.Second, Queue: 1024, WriteTimeout: 10 * time.Second}) {
		t.Errorf("downstream: %+v", d)
	}
	wantUp := Upstream{
		PingInterval: 15 * time.Second, PongTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		BackoffMin: 250 * time.Millisecond, BackoffMax: 30 * time.Second, MaxMessage: 1 << 20,
	}
	if cfg.Upstream != wantUp || cfg.Channels[0].Upstream != wantUp {
		t.Errorf("upstream: %+v, channel upstream %+v", cfg.Upstream, cfg.Channels[0].Upstream)
	}
	ch := cfg.Channels[0]
	if !ch.Lazy || ch.Linger != 30*time.Second || ch.EventField != "type" || ch.Binary != "base64" ||
		ch.Replay != 1000 || ch.ReplayAge != 5*time.Minute || ch.ReplayOnConnect != 0 || ch.StatusEvents ||
		ch.Public || ch.MaxChannels != 1000 || ch.Headers != nil || ch.Subprotocols != nil || ch.Subscribe != nil {
		t.Errorf("channel: %+v", ch)
	}
}

func TestEmptyFile(t *testing.T) {
	cfg, err := load(t, "# nothing yet\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Channels) != 0 || cfg.Server.Listen != ":8080" {
		t.Errorf("got %+v", cfg)
	}
}

func TestUpstreamOverrides(t *testing.T) {
	src := `[upstream]
ping_interval = "20s"
backoff_max = "1m"
max_message = "512KiB"

[[channel]]
name = "a"
path = "/a"
url = "ws://a"

[channel.upstream]
ping_interval = "0s"
max_message = 4096

[[channel]]
name = "b"
path = "/b"
url = "ws://b"
`
	cfg, err := load(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	global := Upstream{
		PingInterval: 20 * time.Second, PongTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		BackoffMin: 250 * time.Millisecond, BackoffMax: time.Minute, MaxMessage: 512 << 10,
	}
	if cfg.Upstream != global {
		t.Errorf("upstream: got %+v, want %+v", cfg.Upstream, global)
	}
	a := global
	a.PingInterval, a.MaxMessage = 0, 4096
	if got := cfg.Channels[0].Upstream; got != a {
		t.Errorf("channel a: got %+v, want %+v", got, a)
	}
	if got := cfg.Channels[1].Upstream; got != global {
		t.Errorf("channel b: got %+v, want %+v", got, global)
	}
	if cfg.Channels[0].Line != 6 || cfg.Channels[1].Line != 15 {
		t.Errorf("lines: %d, %d", cfg.Channels[0].Line, cfg.Channels[1].Line)
	}
}

func TestExplicitZero(t *testing.T) {
	src := `[server]
shutdown_grace = "0s"
max_clients_per_ip = 0

[upstream]
ping_interval = "0s"
pong_timeout = "0s"
read_timeout = "0s"

[[channel]]
name = "a"
path = "/a"
url = "ws://a"
linger = "0s"
replay = 0
replay_age = "0s"
event_field = ""
`
	cfg, err := load(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.ShutdownGrace != 0 || cfg.Upstream.PingInterval != 0 || cfg.Upstream.PongTimeout != 0 || cfg.Upstream.ReadTimeout != 0 {
		t.Errorf("got %+v %+v", cfg.Server, cfg.Upstream)
	}
	c := cfg.Channels[0]
	if c.Linger != 0 || c.Replay != 0 || c.ReplayAge != 0 || c.EventField != "" || c.Upstream.PingInterval != 0 {
		t.Errorf("got %+v", c)
	}
}

func TestValues(t *testing.T) {
	src := `[server]
listen = "${WS2SSE_TEST_HOST}:9090"
cors_origins = ["https://app.example.com", "*"]
overload = "reject"
dashboard = false
tls_cert = "cert.pem"
tls_key = "key.pem"

[auth]
tokens = ["${WS2SSE_TEST_TOKEN}", "static"]
jwt_public_key = "jwt.pem"

[[channel]]
name = "ticker.v2"
path = "/ticker/{symbol:[a-z0-9]{1,12}}"
url = "wss://stream.example.com/ws/{symbol}?key=${WS2SSE_TEST_TOKEN}"
headers = { Authorization = "Bearer ${WS2SSE_TEST_TOKEN}", "X-Client" = "ws2sse" }
subprotocols = ["v1.json"]
subscribe = ['{"op":"subscribe","args":["{symbol}"]}', "price $5 {"]
event_field = "/data/a~1b"
binary = "drop"
replay = 50
replay_on_connect = 50
status_events = true
public = true
max_channels = 10

[[channel]]
name = "root"
path = "/"
url = "ws://127.0.0.1:9000"
lazy = false
`
	cfg, err := load(t, src, map[string]string{"WS2SSE_TEST_HOST": "127.0.0.1", "WS2SSE_TEST_TOKEN": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	wantServer := Server{
		Listen: "127.0.0.1:9090", CORSOrigins: []string{"https://app.example.com", "*"}, MaxClients: 10000,
		Overload: "reject", ShutdownGrace: 10 * time.Second, TLSCert: "cert.pem", TLSKey: "key.pem",
	}
	if !reflect.DeepEqual(cfg.Server, wantServer) {
		t.Errorf("server: got %+v, want %+v", cfg.Server, wantServer)
	}
	wantAuth := &Auth{Tokens: []string{"s3cret", "static"}, JWTPublicKey: "jwt.pem"}
	if !reflect.DeepEqual(cfg.Auth, wantAuth) {
		t.Errorf("auth: got %+v, want %+v", cfg.Auth, wantAuth)
	}
	c := cfg.Channels[0]
	want := DefaultChannel()
	want.Name, want.Path, want.Line = "ticker.v2", "/ticker/{symbol:[a-z0-9]{1,12}}", 13
	want.URL = "wss://stream.example.com/ws/{symbol}?key=s3cret"
	want.Headers = map[string]string{"Authorization": "Bearer s3cret", "X-Client": "ws2sse"}
	want.Subprotocols = []string{"v1.json"}
	want.Subscribe = []string{`{"op":"subscribe","args":["{symbol}"]}`, "price $5 {"}
	want.EventField, want.Binary = "/data/a~1b", "drop"
	want.Replay, want.ReplayOnConnect, want.StatusEvents, want.Public, want.MaxChannels = 50, 50, true, true, 10
	if !reflect.DeepEqual(c, want) {
		t.Errorf("channel:\ngot  %+v\nwant %+v", c, want)
	}
	if r := cfg.Channels[1]; r.Path != "/" || r.Lazy {
		t.Errorf("channel at / with the dashboard off: %+v", r)
	}
}

// TestExample loads config.example.toml with no environment: it must pass
// ws2sse -check as shipped.
func TestExample(t *testing.T) {
	path := filepath.Join("..", "..", "config.example.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(path, data, nil)
	if err != nil {
		t.Fatalf("%s does not load:\n%v", path, err)
	}
	if cfg.Auth != nil {
		t.Errorf("auth: %+v, want none", cfg.Auth)
	}
	if len(cfg.Channels) != 2 || cfg.Channels[0].Name != "prices" || cfg.Channels[1].Name != "ticker" {
		t.Fatalf("channels: %+v", cfg.Channels)
	}
	// The example documents the defaults: loading it must give them.
	want := Default()
	want.File = path
	want.Channels = cfg.Channels
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("the example's [server], [downstream] and [upstream] differ from the defaults:\ngot  %+v\nwant %+v", cfg, want)
	}
	prices := cfg.Channels[0]
	wantPrices := DefaultChannel()
	wantPrices.Name, wantPrices.Path, wantPrices.URL, wantPrices.Line = prices.Name, prices.Path, prices.URL, prices.Line
	wantPrices.Subscribe = prices.Subscribe
	if !reflect.DeepEqual(prices, wantPrices) {
		t.Errorf("the example's first channel differs from the defaults:\ngot  %+v\nwant %+v", prices, wantPrices)
	}

	// Uncommenting the credentials and [auth] needs their variables.
	uncommented := strings.NewReplacer(
		"# headers = {", "headers = {",
		"# [auth]", "[auth]",
		"# tokens =", "tokens =",
		"\nheaders = {}", "\n",
		"# [cluster]", "[cluster]",
		"# redis =", "redis =",
		"# node =", "node =",
		"# lease =", "lease =",
		"# prefix =", "prefix =",
	).Replace(string(data))
	env := map[string]string{"FEED_TOKEN": "t1", "DASH_TOKEN": "t2", "REDIS_URL": "redis://redis:6379/0"}
	cfg, err = Parse(path, []byte(uncommented), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("with [auth] and headers uncommented:\n%v", err)
	}
	if got := cfg.Channels[0].Headers["Authorization"]; got != "Bearer t1" {
		t.Errorf("Authorization = %q", got)
	}
	if cfg.Auth == nil || !reflect.DeepEqual(cfg.Auth.Tokens, []string{"t2"}) {
		t.Errorf("auth: %+v", cfg.Auth)
	}
	if want := (Cluster{Redis: "redis://redis:6379/0", Lease: 5 * time.Second, Prefix: "ws2sse"}); cfg.Cluster == nil || *cfg.Cluster != want {
		t.Errorf("cluster: %+v, want %+v", cfg.Cluster, want)
	}
	_, err = Parse(path, []byte(uncommented), nil)
	for _, v := range []string{"FEED_TOKEN is not set", "DASH_TOKEN is not set", "REDIS_URL is not set"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("without the environment: got %v, want %q", err, v)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
	var cerr *Error
	if errors.As(err, &cerr) {
		t.Errorf("a read failure is an *Error: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "failed to read config: ") {
		t.Errorf("got %q", err)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "ws2sse.toml", Line: 7, Key: "server.max_clent", Msg: "unknown key"}, "ws2sse.toml:7: server.max_clent: unknown key"},
		{Problem{File: "ws2sse.toml", Key: "server.max_clent", Msg: "unknown key"}, "ws2sse.toml: server.max_clent: unknown key"},
		{Problem{File: "ws2sse.toml", Line: 3, Msg: "syntax error: x"}, "ws2sse.toml:3: syntax error: x"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	e := &Error{Problems: []Problem{tests[0].p, tests[2].p}}
	if got, want := e.Error(), tests[0].want+"\n"+tests[2].want; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestByteOrderMark(t *testing.T) {
	cfg, err := load(t, "\uFEFF[server]\nlisten = \":9090\"\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != ":9090" {
		t.Errorf("listen = %q", cfg.Server.Listen)
	}
}

func TestTrustedProxies(t *testing.T) {
	cfg, err := Parse("ws2sse.toml", []byte("[server]\ntrusted_proxies = [\"10.1.2.3/8\", \"192.168.0.7\", \"::1\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range cfg.Server.TrustedProxies {
		got = append(got, p.String())
	}
	if want := "[10.0.0.0/8 192.168.0.7/32 ::1/128]"; fmt.Sprint(got) != want {
		t.Errorf("trusted_proxies = %v, want %s", got, want)
	}
}

func TestCluster(t *testing.T) {
	cfg, err := load(t, channel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != nil {
		t.Errorf("cluster without [cluster]: %+v", cfg.Cluster)
	}

	cfg, err = load(t, channel+"\n[cluster]\nredis = \"${REDIS_URL}\"\n", map[string]string{"REDIS_URL": "redis://:pw@redis:6379/2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Cluster{Redis: "redis://:pw@redis:6379/2", Lease: 5 * time.Second, Prefix: "ws2sse"}); *cfg.Cluster != want {
		t.Errorf("defaults: %+v, want %+v", *cfg.Cluster, want)
	}

	cfg, err = load(t, "[cluster]\nredis = \"unix:///run/redis.sock\"\nnode = \"web-1\"\nlease = \"2s\"\nprefix = \"staging\"\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Cluster{Redis: "unix:///run/redis.sock", Node: "web-1", Lease: 2 * time.Second, Prefix: "staging"}); *cfg.Cluster != want {
		t.Errorf("values: %+v, want %+v", *cfg.Cluster, want)
	}

	for _, tt := range []struct {
		src  string
		env  map[string]string
		want []string
	}{
		{"[cluster]\nnode = \"a\"\n", nil, []string{`ws2sse.toml:1: cluster.redis: missing: [cluster] needs the Redis URL, like "redis://localhost:6379/0"`}},
		{"[cluster]\nredis = \"http://:secret@redis\"\n", nil, []string{`ws2sse.toml:2: cluster.redis: the scheme must be redis, rediss or unix, not "http"`}},
		{"[cluster]\nredis = \"${R}\"\n", map[string]string{"R": "http://:secret@redis"}, []string{`ws2sse.toml:2: cluster.redis: the scheme must be redis, rediss or unix`}},
		{"[cluster]\nredis = \"${R}\"\n", nil, []string{`ws2sse.toml:2: cluster.redis: environment variable R is not set`}},
		{"[cluster]\nredis = \"localhost:6379\"\n", nil, []string{`ws2sse.toml:2: cluster.redis: the scheme must be redis, rediss or unix, not "localhost"`}},
		{"[cluster]\nredis = \"redis:///0\"\n", nil, []string{`ws2sse.toml:2: cluster.redis: missing host`}},
		{"[cluster]\nredis = \"redis://h/x\"\n", nil, []string{`ws2sse.toml:2: cluster.redis: the path must be a database number, like /0`}},
		{"[cluster]\nredis = \"redis://h\"\nlease = \"500ms\"\nnode = \"a b\"\nprefix = \"{x}\"\nleese = 1\n", nil, []string{
			`ws2sse.toml:3: cluster.lease: must be at least 1s, got 500ms`,
			`ws2sse.toml:4: cluster.node: must be 1 to 128 of A-Z a-z 0-9 . _ : -, not "a b"`,
			`ws2sse.toml:5: cluster.prefix: must be 1 to 128 of A-Z a-z 0-9 . _ : -, not "{x}"`,
			`ws2sse.toml:6: cluster.leese: unknown key`,
		}},
		{"cluster = \"redis://h\"\n", nil, []string{`ws2sse.toml:1: cluster: expected a table, got a string`}},
	} {
		t.Run("", func(t *testing.T) {
			_, err := load(t, tt.src, tt.env)
			if err == nil {
				t.Fatalf("%q: no error, want %q", tt.src, tt.want)
			}
			got := problems(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%q:\ngot  %q\nwant %q", tt.src, got, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("%q: the message shows the password: %v", tt.src, err)
			}
		})
	}
}
