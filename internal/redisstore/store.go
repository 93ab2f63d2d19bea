// Package redisstore is the Redis implementation of bridge.Store: the shared logs, upstream leases and presence of ws2sse processes that serve the same channels.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
)

// Options configure a Store.
type Options struct {
	// URL locates the Redis server: "redis://[user:password@]host:port/db",
	// "rediss://…" for TLS, or "unix:///path/to/socket?db=N". Required.
	URL string
	// Node names this process among the processes sharing the store.
	// Default: the host name and the process id, "host-1234".
	Node string
	// Prefix starts every key, so that several deployments can share one
	// Redis. Default "ws2sse".
	Prefix string
	// PingInterval is how often the store checks that Redis answers, for
	// Err. Default 1s.
	PingInterval time.Duration
	// PoolSize bounds the connections to Redis. A channel that is being
	// served holds one while it waits for records. Default 4096.
	PoolSize int
	// Logger receives the store's log lines.
	Logger zerolog.Logger
}

// Store is a bridge.Store on Redis. Each channel has a stream (its shared
// log), a lease key, a key for the holder's upstream state and a sorted set
// of the nodes (each by its run's lease value) that have subscribers, all
// under one hash tag:
//
//	<prefix>:{<channel>}:log       stream: fields p (previous id), n (event name), d (data), b ("1": binary), s (state)
//	<prefix>:{<channel>}:lease     string: the holder's lease value ("<node>/<random>"), PX the lease
//	<prefix>:{<channel>}:state     string: the holder's upstream state, as the JSON of an "upstream" notice
//	<prefix>:{<channel>}:batch     string: the lease value and number of the last batch appended
//	<prefix>:{<channel>}:presence  sorted set: lease value -> until when (unix ms, Redis's clock) its node has subscribers
//
// The channel's name is escaped in keys: bytes other than [A-Za-z0-9._/-]
// become %XX, so that no name can reach into another's keys.
type Store struct {
	rdb    *redis.Client
	node   string
	prefix string
	addr   string // where Redis is, for messages; no credentials
	log    zerolog.Logger

	err    atomic.Pointer[error] // the last ping's error; nil while Redis answers
	since  atomic.Int64          // unix ms of the last change of err
	cancel context.CancelFunc
	wg     sync.WaitGroup // pingLoop
}

// New connects to Redis (lazily: New itself does no I/O) and starts
// checking that it answers. Close releases it.
func New(opts Options) (*Store, error) {
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("bad redis URL %s: %w", Redact(opts.URL), err)
	}
	if opts.Node == "" {
		opts.Node = DefaultNode()
	}
	if opts.Prefix == "" {
		opts.Prefix = "ws2sse"
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = time.Second
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 4096
	}
	ro.PoolSize = opts.PoolSize
	// The callers retry on their own terms: a failed call fails fast.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	ro.DialTimeout = 2 * time.Second
	ro.ContextTimeoutEnabled = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	ro.DisableIdentity = true
	s := &Store{
		rdb:    redis.NewClient(ro),
		node:   opts.Node,
		prefix: opts.Prefix,
		addr:   Redact(opts.URL),
		log:    opts.Logger.With().Str("redis", Redact(opts.URL)).Logger(),
	}
	s.since.Store(time.Now().UnixMilli())
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(func() { s.pingLoop(ctx, opts.PingInterval) })
	return s, nil
}

// DefaultNode is the default node name: the host name and the process id.
func DefaultNode() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ws2sse"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// Close stops the store and closes its connections. The channels using it
// must be closed first.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.rdb.Close()
}

// Node returns the node's name.
func (s *Store) Node() string { return s.node }

// Addr returns where Redis is, without credentials.
func (s *Store) Addr() string { return s.addr }

// Unreachable reports, while Redis does not answer the store's pings,
// since when and why; the zero time and nil while it answers.
func (s *Store) Unreachable() (since time.Time, err error) {
	if p := s.err.Load(); p != nil {
		return time.UnixMilli(s.since.Load()), *p
	}
	return time.Time{}, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}

// pingLoop pings Redis every interval and keeps the result for Err.
func (s *Store) pingLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		err := s.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.setErr(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) setErr(err error) {
	old := s.err.Load()
	switch {
	case err != nil && old == nil:
		s.err.Store(&err)
		s.since.Store(time.Now().UnixMilli())
		s.log.Warn().Err(err).Msg("redis unreachable; clients stay connected, channels catch up when it is back")
	case err != nil:
		s.err.Store(&err)
	case old != nil:
		s.err.Store(nil)
		s.since.Store(time.Now().UnixMilli())
		s.log.Info().Msg("redis reachable again")
	}
}

// Log returns the shared log of a channel.
func (s *Store) Log(channel string, o bridge.LogOptions) bridge.Log {
	base := s.prefix + ":{" + escape(channel) + "}:"
	return &streamLog{
		s:        s,
		stream:   base + "log",
		lease:    base + "lease",
		state:    base + "state",
		batch:    base + "batch",
		presence: base + "presence",
		maxLen:   max(o.MaxLen, 1),
		ttl:      o.TTL,
	}
}

// escape makes a channel name safe inside a key: bytes other than
// [A-Za-z0-9._/-] become %XX. Braces, colons and percent signs are among
// them, so that a name can neither end the hash tag nor look like another
// name's key.
func escape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// Redact returns a Redis URL fit for logs: no user name or password, no
// query.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable redis URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// RouteLibraryLogs sends the lines the Redis client library logs on its
// own (failed dials, mostly; the store reports what matters) to log at
// debug level. It affects every client of the process.
func RouteLibraryLogs(log zerolog.Logger) {
	redis.SetLogger(libraryLogger{log})
}

type libraryLogger struct{ log zerolog.Logger }

func (l libraryLogger) Printf(_ context.Context, format string, v ...any) {
	if e := l.log.Debug(); e.Enabled() {
		e.Str("source", "go-redis").Msg(fmt.Sprintf(format, v...))
	}
}

// errNil reports whether err is Redis's "no value".
func errNil(err error) bool { return errors.Is(err, redis.Nil) }
