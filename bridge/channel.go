// Package bridge turns upstream WebSocket frames into events and fans them out to subscribers, with a replay buffer for resume.
package bridge

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/upstream"
)

// Options configure a Channel.
type Options struct {
	// Name identifies the channel in logs, metrics and the dashboard.
	Name string
	// Group is the name of the template a channel was opened from, for
	// reports that must not have one series per channel; set by
	// Hub.OpenInGroup.
	Group string
	// Path is the URL path clients use, for status pages.
	Path string
	// Upstream configures the channel's upstream connection. OnFrame and
	// OnState are set by the channel.
	Upstream upstream.Options
	// Lazy channels connect on their first subscriber and disconnect Linger
	// after the last one leaves; others stay connected while open.
	Lazy bool
	// Linger is how long a lazy channel stays connected with no
	// subscriber. Default 30s; negative disconnects as soon as the last
	// subscriber leaves.
	Linger time.Duration
	// EventField names the JSON member (a top-level name or a JSON pointer
	// such as "/a/b") whose string value is the event type. Empty: every
	// event is "message".
	EventField string
	// DropBinary leaves binary frames out of SSE streams; by default they
	// are sent base64-encoded.
	DropBinary bool
	// Replay is how many events are kept for resume. Default 1000;
	// negative keeps none.
	Replay int
	// ReplayAge is how old a kept event may grow. Default 5m.
	ReplayAge time.Duration
	// ReplayOnConnect is how many kept events a subscriber with no resume
	// id gets first. Default 0.
	ReplayOnConnect int
	// Queue is how many events a subscriber may fall behind before it is
	// ended with ErrSlowClient. Default 1024.
	Queue int
	// StatusEvents publishes an "upstream" notice on each upstream state
	// change.
	StatusEvents bool
	// Logger receives the channel's log lines; a "channel" field is added.
	Logger zerolog.Logger
	// OnIdle, if set, is called (without locks held) when a lazy channel
	// has lingered with no subscriber and disconnected its upstream.
	OnIdle func(*Channel)
	// Now returns the current time. Default time.Now.
	Now func() time.Time

	// Store, if set, shares the channel with the other processes that use
	// the store: one of them at a time holds the upstream, every one
	// serves the events of the shared log, with its ids (see Store). Nil:
	// the channel lives in this process alone.
	Store Store
	// Lease is how long the upstream lease lasts unless renewed, with a
	// Store: a holder that dies is replaced within about this long. It is
	// renewed every third of it. Default 5s.
	Lease time.Duration
}

// Channel is one upstream feed and its subscribers.
type Channel struct {
	opts Options
	log  zerolog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // upstream runs

	n counters

	// mu guards everything below. Publishing takes it exclusively;
	// subscribers read events under the read lock.
	mu        sync.RWMutex
	ring      ring
	last      eventKey           // key of the newest event
	lastTime  time.Time          // arrival of the newest event
	subs      []*Subscription    // live subscribers; Subscription.idx is the position
	notify    []chan<- struct{}  // signalled on every publication (Notify)
	clients   [numTransports]int // subscribers per transport
	everUp    bool               // the upstream connected at least once
	names     []string           // event names seen, in order of first appearance, at most maxNames
	moreNames bool               // names were seen past maxNames
	state     upstream.Status    // latest upstream state
	stateTime time.Time          // when state was entered
	gen       uint64             // current upstream run; frames of older runs are dropped
	stop      context.CancelFunc // stops the current upstream run; nil when none
	linger    *time.Timer        // pending linger stop, for lazy channels
	closed    bool

	// With a Store. shared and activity are set by New; the rest is
	// guarded by mu.
	shared   Log           // the shared log
	activity chan struct{} // capacity 1: the first subscriber came or the last left (cluster.go); never closed
	synced   chan struct{} // closed once the current run has loaded the log
	progress chan struct{} // closed and replaced whenever records are published
	pending  int           // subscriptions waiting for synced
	holding  bool          // the current run holds the upstream lease
	burst    uint64        // events of the batch being published before this one
}

// New returns a channel. A channel that is not lazy connects at once; a lazy
// one on its first subscriber. Close releases it.
func New(opts Options) *Channel {
	if opts.Linger == 0 {
		opts.Linger = 30 * time.Second
	} else if opts.Linger < 0 {
		opts.Linger = 0
	}
	if opts.Replay == 0 {
		opts.Replay = 1000
	} else if opts.Replay < 0 {
		opts.Replay = 0
	}
	if opts.ReplayAge <= 0 {
		opts.ReplayAge = 5 * time.Minute
	}
	opts.ReplayOnConnect = min(max(opts.ReplayOnConnect, 0), opts.Replay)
	if opts.Queue <= 0 {
		opts.Queue = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lease <= 0 {
		opts.Lease = 5 * time.Second
	}
	c := &Channel{
		opts: opts,
		log:  opts.Logger.With().Str("channel", opts.Name).Logger(),
	}
	if opts.Store != nil {
		c.log = c.log.With().Str("node", opts.Store.Node()).Logger()
		c.shared = opts.Store.Log(opts.Name, logOptions(opts))
		c.activity = make(chan struct{}, 1)
		c.progress = make(chan struct{})
	}
	// A subscriber may start at the oldest event of the replay window and
	// then fall a full queue behind: the ring has room for both, so that it
	// never drops an event a subscriber in good standing has yet to read.
	// In a cluster, a batch read from the shared log comes on top (see
	// pushLocked).
	c.ring.size = opts.Replay + opts.Queue
	if opts.Store != nil {
		c.ring.size += readBatch
	}
	c.state = upstream.Status{State: upstream.StateDown}
	c.stateTime = opts.Now()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	if !opts.Lazy {
		c.startLocked()
	} else if opts.OnIdle != nil {
		// A channel nobody subscribes to goes idle too.
		c.scheduleLingerLocked()
	}
	c.mu.Unlock()
	return c
}

// Name returns the channel's name.
func (c *Channel) Name() string { return c.opts.Name }

// Lazy reports whether the channel connects only while it has subscribers.
func (c *Channel) Lazy() bool { return c.opts.Lazy }

// Close disconnects the upstream, ends every subscription with ErrClosed
// and waits for the upstream connection to be closed.
func (c *Channel) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.linger != nil {
			c.linger.Stop()
		}
		c.stopLocked()
		for len(c.subs) > 0 {
			c.endLocked(c.subs[len(c.subs)-1], ErrClosed)
		}
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// startLocked starts an upstream run unless one is going.
func (c *Channel) startLocked() {
	if c.stop != nil || c.closed {
		return
	}
	if c.shared != nil {
		c.startClusterLocked()
		return
	}
	ctx, stop := context.WithCancel(c.ctx)
	c.stop = stop
	c.gen++
	gen := c.gen
	c.state = upstream.Status{State: upstream.StateConnecting}
	c.stateTime = c.opts.Now()
	uo := c.opts.Upstream
	uo.Logger = c.log
	uo.OnFrame = func(f upstream.Frame) { c.publish(gen, f) }
	uo.OnState = func(s upstream.Status) { c.setState(gen, s) }
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := upstream.Run(ctx, uo); err != nil {
			c.log.Error().Err(err).Msg("upstream cannot start; channel stays down")
			c.setState(gen, upstream.Status{State: upstream.StateDown, Err: err})
		}
	}()
}

// stopLocked stops the current upstream run, if any. Its goroutine ends on
// its own; Close waits for it.
func (c *Channel) stopLocked() {
	if c.stop == nil {
		return
	}
	c.stop()
	c.stop = nil
	c.gen++
	c.holding = false
	c.state = upstream.Status{State: upstream.StateDown}
	c.stateTime = c.opts.Now()
}

// publish turns an upstream frame into an event and offers it to every
// subscriber. It never blocks on a subscriber.
func (c *Channel) publish(gen uint64, f upstream.Frame) {
	name := "message"
	if !f.Binary {
		name = eventName(f.Data, c.opts.EventField)
	}
	now := c.opts.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed {
		return
	}
	key := nextKey(c.last, now)
	id := key.String()
	e := &Event{
		ID: id, Name: name, Data: f.Data, Binary: f.Binary, Time: now, key: key,
		SSE:  encodeSSE(id, name, f.Data, f.Binary, c.opts.DropBinary),
		JSON: encodeJSON(id, name, f.Data, f.Binary),
	}
	c.last, c.lastTime = key, now
	c.n.eventsIn.Add(1)
	c.noteNameLocked(name)
	c.pushLocked(e)
}

// noteNameLocked remembers an event name for Info.
func (c *Channel) noteNameLocked(name string) {
	if slices.Contains(c.names, name) {
		return
	}
	if len(c.names) < maxNames {
		c.names = append(c.names, name)
	} else {
		c.moreNames = true
	}
}

// pushLocked appends e to the ring and wakes every subscriber, ending the
// ones that fell more than a queue behind. Then it lets go of the events
// that are out of the replay window and that no subscriber has yet to read.
//
// The events of a batch read from the shared log are pushed together, and
// no subscriber can read in between: those pushed before e in the batch
// (c.burst) are not held against it. A subscriber is ended only if it was
// already a full queue behind when the batch came.
func (c *Channel) pushLocked(e *Event) {
	c.ring.push(e)
	head := c.ring.head
	limit := uint64(c.opts.Queue) + c.burst
	keep := head // the oldest event a subscriber has yet to read
	for i := 0; i < len(c.subs); {
		s := c.subs[i]
		next := s.next.Load()
		if head-max(next, s.join) > limit {
			c.slowLocked(s)
			continue // s was swapped out of position i
		}
		keep = min(keep, next)
		select {
		case s.wake <- struct{}{}:
		default:
		}
		i++
	}
	for _, n := range c.notify {
		select {
		case n <- struct{}{}:
		default:
		}
	}
	from := head - min(head, uint64(c.opts.Replay))
	c.ring.trim(keep, from, e.Time.Add(-c.opts.ReplayAge))
}

// Notify has n signalled, without blocking, whenever an event is published,
// until stop is called. A writer that serves many subscriptions of the
// channel waits on n instead of on each one's Wake, and then reads every
// one of them; give n a capacity of 1, so that a burst is one signal.
func (c *Channel) Notify(n chan<- struct{}) (stop func()) {
	c.mu.Lock()
	c.notify = append(c.notify, n)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if i := slices.Index(c.notify, n); i >= 0 {
			c.notify = slices.Delete(c.notify, i, i+1)
		}
	}
}

func (c *Channel) slowLocked(s *Subscription) {
	c.n.slow.Add(1)
	c.log.Warn().Uint64("subscription", s.num).Int("queue", c.opts.Queue).
		Msg("client fell a full queue behind; disconnecting it (it can resume with Last-Event-ID)")
	c.endLocked(s, ErrSlowClient)
}

// setState records an upstream state change and, with StatusEvents,
// publishes it as a notice.
func (c *Channel) setState(gen uint64, s upstream.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed {
		return
	}
	c.setStatusLocked(s, noticeJSON(s))
}

// setStatusLocked records the upstream state. With notice, the JSON of an
// "upstream" notice, it is a change as it happens: it counts reconnects
// and, with StatusEvents, publishes the notice. Without, the state is
// taken up silently (a node catching up with the shared log).
func (c *Channel) setStatusLocked(s upstream.Status, notice []byte) {
	c.state, c.stateTime = s, c.opts.Now()
	if s.State == upstream.StateUp {
		if c.everUp && notice != nil {
			c.n.reconnects.Add(1)
		}
		c.everUp = true
	}
	if notice == nil || !c.opts.StatusEvents || s.State == upstream.StateConnecting {
		return
	}
	c.pushLocked(&Event{
		Name: "upstream", Data: notice, Time: c.opts.Now(), key: c.last, notice: true,
		SSE:  sse.AppendEvent(nil, "", "upstream", notice),
		JSON: encodeJSON("", "upstream", notice, false),
	})
}

// noticeJSON returns the data of the "upstream" notice of a state.
func noticeJSON(s upstream.Status) []byte {
	n := noticeData{State: s.State.String()}
	if s.State == upstream.StateDown {
		if s.Err != nil {
			n.Error = s.Err.Error()
		}
		ms := s.RetryIn.Milliseconds()
		n.RetryInMs = &ms
	}
	data, _ := json.Marshal(n)
	return data
}

// maxNames bounds the event names a channel remembers for Info.
const maxNames = 32

// Info is a snapshot of a channel for status pages.
type Info struct {
	Name          string
	Group         string // Options.Group
	Path          string // Options.Path
	Lazy          bool
	State         upstream.Status
	StateSince    time.Time
	LastEventID   string
	LastEventTime time.Time // zero when no event arrived yet
	EventNames    []string  // names of the events seen, first 32 distinct
	MoreNames     bool      // more names were seen than EventNames holds
	Replay        int       // Options.Replay: how many events a resume can get
	// Holder reports, with a Store, that this process holds the upstream
	// lease. State is then the holder's upstream state, wherever it is.
	Holder bool
	Stats
}

// Clients returns the number of subscribers over every transport.
func (inf *Info) Clients() int {
	n := 0
	for _, c := range inf.Stats.Clients {
		n += c
	}
	return n
}

// Info returns a snapshot of the channel.
func (c *Channel) Info() Info {
	c.mu.RLock()
	defer c.mu.RUnlock()
	inf := Info{
		Name: c.opts.Name, Group: c.opts.Group, Path: c.opts.Path, Lazy: c.opts.Lazy,
		State: c.state, StateSince: c.stateTime, LastEventTime: c.lastTime,
		EventNames: slices.Clone(c.names), MoreNames: c.moreNames, Replay: c.opts.Replay, Holder: c.holding,
		Stats: Stats{
			EventsIn: c.n.eventsIn.Load(), SlowClients: c.n.slow.Load(),
			Subscriptions: c.n.subscriptions.Load(), Reconnects: c.n.reconnects.Load(),
			ReplayHits: c.n.replayHits.Load(), Gaps: c.n.gaps.Load(),
			Clients: c.clients,
		},
	}
	for i := range inf.EventsOut {
		inf.EventsOut[i] = c.n.eventsOut[i].Load()
		inf.Writes[i] = c.n.writes[i].Load()
		inf.BytesOut[i] = c.n.bytesOut[i].Load()
	}
	if !c.lastTime.IsZero() {
		inf.LastEventID = c.last.String()
	}
	return inf
}

// closeIfIdle marks the channel closed if it has no subscriber and no
// upstream run, and reports whether it did. The caller then calls Close.
func (c *Channel) closeIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.subs) > 0 || c.stop != nil || c.closed {
		return false
	}
	c.closed = true
	return true
}
