package bridge

import (
	"context"
	"time"
)

// A Store lets several processes serve the same channels. Each channel has
// a shared log: the process that holds the channel's upstream lease appends
// the upstream's frames to it, and every process reads it and fans the
// records out to its own subscribers through its ring. A record's id is the
// id of the event it becomes, on every process, so that a client can resume
// on any of them.
//
// Without a Store (Options.Store nil) a channel lives in its process alone:
// its ring is its replay buffer and upstream frames get ids there.
//
// MemoryStore implements Store within one process; the Redis implementation
// lives in internal/redisstore.
type Store interface {
	// Node names this process among the processes sharing the store.
	Node() string
	// Log returns the shared log of the named channel. It does no I/O.
	Log(channel string, o LogOptions) Log
}

// LogOptions size a channel's shared log.
type LogOptions struct {
	// MaxLen is about how many records the log keeps; older ones are
	// trimmed. At least 1.
	MaxLen int
	// TTL drops a log that has had no append for this long; 0 keeps it.
	TTL time.Duration
}

// A Log is one channel's shared log, together with the lease on its
// upstream and the presence of the nodes that have subscribers of it. Its
// methods are safe for concurrent use. Errors are those of reaching the
// store; a lease that is not held is reported by a false result.
type Log interface {
	// Append adds recs, in order, at the end of the log, if lease is
	// still the lease's value; it reports whether it did. Ids are assigned
	// by the log and strictly increase. batch numbers the appends made
	// under one lease: an append whose batch is the last one appended
	// under that lease is not appended again (and reports true), so that a
	// retry after an uncertain failure adds nothing twice. Acquire and
	// Release forget the last batch: a lease taken again with the same
	// value numbers its batches from 1 again. Each record is
	// stored with the id of the record before it (Record.Prev), so that a
	// reader can tell whether it missed any. A State record also becomes
	// the log's current state, which lasts as long as the lease.
	Append(ctx context.Context, lease string, batch uint64, recs []Record) (bool, error)
	// Read waits until the log has records after the id after, and
	// returns up to max of them, oldest first. "0-0" reads from the
	// start. It returns ctx.Err() if ctx is done first.
	Read(ctx context.Context, after string, max int) ([]Record, error)
	// Last returns the newest n records, oldest first, and the current
	// state (nil when there is none).
	Last(ctx context.Context, n int) ([]Record, []byte, error)
	// State returns the current state (nil when there is none).
	State(ctx context.Context) ([]byte, error)

	// Acquire takes the lease with value lease for ttl if nobody holds
	// it. Otherwise it reports false and how long the holder's lease has
	// left.
	Acquire(ctx context.Context, lease string, ttl time.Duration) (bool, time.Duration, error)
	// Renew extends the lease, and the current state, to ttl from now if
	// lease is still the lease's value; it reports whether it did.
	Renew(ctx context.Context, lease string, ttl time.Duration) (bool, error)
	// Release gives up the lease if lease is still its value, and clears
	// the current state.
	Release(ctx context.Context, lease string) error

	// Present marks node (a name that stands for one node, or one run of
	// it) as having subscribers for ttl; with ttl 0, as having none.
	Present(ctx context.Context, node string, ttl time.Duration) error
	// Presence returns how many of those have subscribers now.
	Presence(ctx context.Context) (int, error)
}

// Record is one entry of a shared log: an upstream frame, or a change of
// the holder's upstream state.
type Record struct {
	ID     string // "<unix-ms>-<seq>"; assigned by Log.Append
	Prev   string // the id of the record before it; "" for the first one of a new log
	Name   string // the event name, as the holder mapped it; "" for a state record
	Data   []byte // the frame; for a state record the JSON of the "upstream" notice
	Binary bool   // the frame was binary
	State  bool   // a state record
}
