// Package config loads and validates the ws2sse TOML configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// Config is a loaded configuration with every default filled in.
//
// A duration or count that the file sets to 0 stays 0; the field comments say
// what 0 means where it is allowed.
type Config struct {
	File       string     // the path it was loaded from, as given
	Server     Server     // [server]
	Auth       *Auth      // [auth]; nil when the table is absent: every channel is public
	Downstream Downstream // [downstream]
	Upstream   Upstream   // [upstream]: the defaults every channel starts from
	Channels   []Channel  // [[channel]], in file order
	Cluster    *Cluster   // [cluster]; nil when the table is absent: the process serves alone
}

// Values of Server.Overload.
const (
	OverloadRetry  = "retry"
	OverloadReject = "reject"
)

// Values of Channel.Binary.
const (
	BinaryBase64 = "base64"
	BinaryDrop   = "drop"
)

// Server is the [server] table.
type Server struct {
	Listen          string   // host:port; default ":8080"
	CORSOrigins     []string // allowed origins, "*" for any; default none
	MaxClients      int      // all transports together, at least 1; default 10000
	MaxClientsPerIP int      // 0: no per-IP cap (the default)
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, for max_clients_per_ip; by default none.
	TrustedProxies []netip.Prefix
	Overload       string        // OverloadRetry (the default) or OverloadReject
	ShutdownGrace  time.Duration // 0: do not wait; default 10s
	Dashboard      bool          // serve the dashboard at "/"; default true
	TLSCert        string        // both set or both empty
	TLSKey         string
}

// Auth is the [auth] table. Tokens may be combined with one of the JWT keys;
// JWTSecret and JWTPublicKey are never both set.
type Auth struct {
	Tokens       []string // static bearer tokens, none empty
	JWTSecret    string   // HS256 key
	JWTPublicKey string   // path to a PEM file, RS256 or ES256
}

// Cluster is the [cluster] table: several processes serve the same channels
// through Redis.
type Cluster struct {
	Redis  string        // redis://, rediss:// or unix:// URL; required
	Node   string        // this process among the others; "": the host name and the process id
	Lease  time.Duration // how long an upstream lease lasts unless renewed, at least 1s; default 5s
	Prefix string        // the first part of every Redis key; default "ws2sse"
}

// Downstream is the [downstream] table.
type Downstream struct {
	Heartbeat    time.Duration // more than 0; default 15s
	Retry        time.Duration // the SSE retry field; default 2s
	Queue        int           // events queued per client, at least 1; default 1024
	WriteTimeout time.Duration // one write to one client, more than 0; default 10s
}

// Upstream is the [upstream] table, or a channel's [channel.upstream] merged
// over it.
type Upstream struct {
	PingInterval time.Duration // 0: no pings; default 15s
	PongTimeout  time.Duration // less than PingInterval when pings are on; default 5s
	ReadTimeout  time.Duration // 0: no read timeout; default 60s
	BackoffMin   time.Duration // more than 0; default 250ms
	BackoffMax   time.Duration // at least BackoffMin; default 30s
	MaxMessage   int64         // bytes, more than 0; default 1 MiB
}

// Channel is one [[channel]] entry.
type Channel struct {
	Name            string            // unique, 1 to 64 of [A-Za-z0-9._-]
	Path            string            // a gorilla/mux path template
	URL             string            // ws:// or wss://, may use the path's {variables}
	Headers         map[string]string // sent with the upgrade request; nil when none
	Subprotocols    []string          // nil when none
	Subscribe       []string          // text frames sent after every connect; may use the path's {variables}
	Lazy            bool              // connect on the first client; default true, always true for a templated path
	Linger          time.Duration     // 0: close as soon as the last client leaves; default 30s
	EventField      string            // "": every event is "message"; a top-level name or a JSON pointer; default "type"
	Binary          string            // BinaryBase64 (the default) or BinaryDrop
	Replay          int               // events kept for resume, 0: none; default 1000
	ReplayAge       time.Duration     // 0: no age limit; default 5m
	ReplayOnConnect int               // at most Replay; default 0
	StatusEvents    bool              // default false
	Public          bool              // default false
	MaxChannels     int               // at least 1; default 1000
	Upstream        Upstream          // [upstream] with this channel's [channel.upstream] applied
	Line            int               // line of the [[channel]] header, for messages
}

// ReservedPaths are the built-in endpoints no channel may use or shadow, nor
// sit under. "/" is reserved as well while server.dashboard is true.
var ReservedPaths = []string{"/healthz", "/readyz", "/metrics", "/channels"}

// DashboardPaths are the dashboard's page and files, reserved while
// server.dashboard is on.
var DashboardPaths = []string{"/", "/app.js", "/app.css"}

// Default returns a configuration with every default and no channels.
func Default() *Config {
	return &Config{
		Server: Server{
			Listen:        ":8080",
			MaxClients:    10000,
			Overload:      OverloadRetry,
			ShutdownGrace: 10 * time.Second,
			Dashboard:     true,
		},
		Downstream: Downstream{
			Heartbeat:    15 * time.Second,
			Retry:        2 * time.Second,
			Queue:        1024,
			WriteTimeout: 10 * time.Second,
		},
		Upstream: defaultUpstream(),
	}
}

// DefaultChannel returns a channel with every default, the default upstream
// settings and no name, path or URL.
func DefaultChannel() Channel {
	return newChannel(defaultUpstream())
}

func defaultUpstream() Upstream {
	return Upstream{
		PingInterval: 15 * time.Second,
		PongTimeout:  5 * time.Second,
		ReadTimeout:  60 * time.Second,
		BackoffMin:   250 * time.Millisecond,
		BackoffMax:   30 * time.Second,
		MaxMessage:   1 << 20,
	}
}

func newChannel(up Upstream) Channel {
	return Channel{
		Lazy:        true,
		Linger:      30 * time.Second,
		EventField:  "type",
		Binary:      BinaryBase64,
		Replay:      1000,
		ReplayAge:   5 * time.Minute,
		MaxChannels: 1000,
		Upstream:    up,
	}
}

// Load reads and parses the file at path, expanding ${NAME} from the
// environment. A file that cannot be read is a plain error; anything wrong
// inside it is an *Error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse parses data, the contents of file, and validates it. Every ${NAME} in
// a string value is replaced by lookupEnv(NAME); a nil lookupEnv sets no
// variable. Every problem found is reported at once in an *Error, but a
// syntax error stops parsing and is the only one.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // as some editors on Windows save
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Problems: []Problem{syntaxProblem(file, err)}}
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	p := &parser{file: file, lines: indexLines(data), lookupEnv: lookupEnv}
	cfg := p.config(doc)
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &Error{Problems: p.problems}
	}
	cfg.File = file
	return cfg, nil
}

// syntaxProblem reports a document go-toml refused.
func syntaxProblem(file string, err error) Problem {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return Problem{File: file, Line: line, Msg: "syntax error: " + strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return Problem{File: file, Msg: "syntax error: " + strings.TrimPrefix(err.Error(), "toml: ")}
}
