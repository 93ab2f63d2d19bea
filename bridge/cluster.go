package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ws2sse/ws2sse/internal/sse"
	"github.com/ws2sse/ws2sse/upstream"
)

// A channel with Options.Store runs in cluster mode. While it is active (an
// eager channel always; a lazy one while it has subscribers, and then for
// its linger time) it runs a clusterRun, which
//
//   - follows the shared log into the ring: it loads the newest records at
//     the start, then reads each new record as it is appended, and
//     publishes it with its id (readLoop);
//   - takes part in the contention for the upstream lease, and while it
//     holds it, runs the upstream and appends its frames and state changes
//     to the log (leaseLoop, holding);
//   - for a lazy channel, marks the node present in the log while it has
//     subscribers: the holder keeps the upstream while any node is present,
//     and releases it Linger after the last one left.
//
// Subscribers are served from the ring exactly as in a single process.

const (
	readBatch = 512 // records per Log.Read
	// appendBatch is the most records per Log.Append: less than
	// minLogLen, so that an append never trims its own records.
	appendBatch = 64
	appendBytes = 1 << 20 // and at most about this many bytes, unless one record is larger
	// minLogLen is the least a shared log keeps, so that a reader that
	// fell a little behind can catch up even when Replay is small.
	minLogLen = 100
	// syncWait is how long a new subscription waits for its channel to
	// load the shared log before it is served from what the ring holds.
	syncWait = 3 * time.Second
	// teardownTimeout bounds releasing the lease when a run ends.
	teardownTimeout = 2 * time.Second
	// noLogTTL: a replay age at least this long keeps the shared log
	// forever.
	noLogTTL = 365 * 24 * time.Hour
)

// logOptions sizes the shared log of a channel with opts (defaults applied).
func logOptions(opts Options) LogOptions {
	lo := LogOptions{MaxLen: max(opts.Replay, minLogLen)}
	if opts.ReplayAge < noLogTTL {
		lo.TTL = max(2*opts.ReplayAge, 10*time.Minute)
	}
	return lo
}

// clusterRun is one run of a channel in cluster mode.
type clusterRun struct {
	c   *Channel
	gen uint64 // the channel's run this is
	log Log
	// lease is this run's lease value, the node's name and a random
	// suffix. It also marks the run present: a run that ends cannot then
	// take back the presence of the node's next run.
	lease  string
	synced chan struct{} // closed by readLoop once the log is loaded
	lost   chan struct{} // capacity 1: an append found the lease gone
	idle   bool          // the run ended because nobody needs it; written by leaseLoop
}

// startClusterLocked starts a cluster run.
func (c *Channel) startClusterLocked() {
	ctx, stop := context.WithCancel(c.ctx)
	c.stop = stop
	c.gen++
	node := c.opts.Store.Node()
	r := &clusterRun{
		c: c, gen: c.gen, log: c.shared,
		lease:  fmt.Sprintf("%s/%016x", node, rand.Uint64()),
		synced: make(chan struct{}),
		lost:   make(chan struct{}, 1),
	}
	c.synced = r.synced
	c.wg.Add(1)
	go func() {
		r.run(ctx)
		c.wg.Done()
		// After Done: OnIdle closes the channel, which waits for its runs.
		if r.idle && c.opts.OnIdle != nil {
			c.opts.OnIdle(c)
		}
	}()
}

func (r *clusterRun) run(ctx context.Context) {
	var g errgroup.Group
	g.Go(func() error { return r.readLoop(ctx) })
	g.Go(func() error { return r.leaseLoop(ctx) })
	_ = g.Wait()
}

// readLoop follows the shared log into the ring until ctx is done. When the
// store cannot be reached it retries with backoff, then catches up from the
// last record it read. If records after that one are gone (trimmed before
// this node could read them), it loads the log anew, ending the
// subscribers, who resume from their last id and are told of the gap.
func (r *clusterRun) readLoop(ctx context.Context) error {
	c := r.c
	bo := upstream.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	var (
		last    string // id of the newest record read; "" until the log is loaded
		resync  bool   // the store was unreachable: take up its state again
		failing bool   // the last call failed
	)
	for {
		var err error
		switch {
		case last == "":
			var recs []Record
			var state []byte
			if recs, state, err = r.log.Last(ctx, max(c.opts.Replay, 1)); err == nil {
				var ok bool
				if last, ok = c.loadLog(r.gen, recs, state); !ok {
					return nil // the run was stopped
				}
				resync = false
				select {
				case <-r.synced:
				default:
					close(r.synced)
				}
			}
		case resync:
			var state []byte
			if state, err = r.log.State(ctx); err == nil {
				c.syncStatus(r.gen, parseStatus(state))
				resync = false
			}
		default:
			var recs []Record
			if recs, err = r.log.Read(ctx, last, readBatch); err == nil && len(recs) > 0 {
				// A record whose predecessor is not the last one read
				// means that records in between were trimmed unread. A
				// record with no predecessor starts a new log (the old
				// one expired, or the store lost it): nothing is known
				// to be missing.
				if p := recs[0].Prev; p != "" && p != last {
					c.log.Warn().Str("after", last).Str("next", recs[0].ID).
						Msg("records were trimmed from the shared log before this node read them; reloading it and ending the subscriptions (they resume with a gap notice)")
					last = ""
					continue
				}
				c.publishRecords(r.gen, recs)
				last = recs[len(recs)-1].ID
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !failing {
				c.log.Warn().Err(err).Msg("cannot read the shared log; clients stay connected, retrying")
				failing = true
				c.syncStatus(r.gen, upstream.Status{State: upstream.StateDown, Err: fmt.Errorf("shared log unreachable: %w", err)})
			}
			resync = last != ""
			if !sleep(ctx, bo.Next()) {
				return nil
			}
			continue
		}
		if failing {
			c.log.Info().Str("after", last).Msg("shared log reachable again; catching up")
			failing = false
		}
		bo.Reset()
	}
}

// leaseLoop contends for the upstream lease, holds the upstream while it
// has it, keeps the node's presence, and ends the run of a lazy channel that
// nobody needs. On the way out it releases what it holds.
func (r *clusterRun) leaseLoop(ctx context.Context) error {
	c := r.c
	ttl := c.opts.Lease
	tick := ttl / 3
	var (
		h          *holding  // the upstream while this run holds the lease
		validUntil time.Time // when the lease ends unless renewed
		present    bool      // the node is marked present in the log
		quietSince time.Time // since when the node has had no subscriber; zero while it has one
		idleSince  time.Time // while holding: since when no node has had a subscriber
		failing    bool      // the last round had a store error
	)
	defer func() {
		if h != nil {
			ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
			defer cancel()
			// The lease goes before the upstream has closed, so that
			// another node can take over at once, even when the close
			// handshake takes its time or a shutdown cut off at the end
			// of its grace leaves no time for it. Cancelled, the appender
			// appends nothing more, and the log fences off an append in
			// flight.
			h.cancel()
			if err := r.log.Release(ctx, r.lease); err != nil {
				c.log.Warn().Err(err).Msg("failed to release the upstream lease; it expires on its own")
			} else {
				c.log.Info().Msg("upstream lease released")
			}
			h.stop()
		}
		if present {
			ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
			defer cancel()
			_ = r.log.Present(ctx, r.lease, 0)
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-c.activity:
		case <-r.lost:
		}
		now := time.Now()
		local := c.localClients()
		wait := tick
		var err error // the round's last store error
		if c.opts.Lazy {
			if local > 0 {
				quietSince = time.Time{}
				if err = r.log.Present(ctx, r.lease, ttl); err == nil {
					present = true
				}
			} else {
				if quietSince.IsZero() {
					quietSince = now
				}
				if present {
					if err = r.log.Present(ctx, r.lease, 0); err == nil {
						present = false
					}
				}
			}
		}
		if h != nil {
			ok, e := r.log.Renew(ctx, r.lease, ttl)
			switch {
			case e != nil:
				err = e
				if !now.Before(validUntil) {
					h.stop()
					h = nil
					c.log.Warn().Err(e).Msg("upstream lease expired: the shared store cannot be reached; upstream disconnected")
				}
			case !ok:
				h.stop()
				h = nil
				c.log.Warn().Msg("upstream lease lost to another node; upstream disconnected")
			default:
				validUntil = now.Add(ttl)
			}
		}
		if h != nil && c.opts.Lazy {
			if local > 0 {
				idleSince = time.Time{}
			} else if n, e := r.log.Presence(ctx); e != nil {
				err = e
			} else if n > 0 {
				idleSince = time.Time{}
			} else {
				if idleSince.IsZero() {
					idleSince = now
				}
				if now.Sub(idleSince) >= c.opts.Linger {
					h.stop()
					h = nil
					if e := r.log.Release(ctx, r.lease); e != nil {
						err = e
					}
					c.log.Info().Dur("linger", c.opts.Linger).Msg("no clients on any node; upstream disconnected and lease released")
				}
			}
		}
		if h == nil {
			idleSince = time.Time{}
			switch {
			case !c.opts.Lazy || local > 0:
				ok, left, e := r.log.Acquire(ctx, r.lease, ttl)
				switch {
				case e != nil:
					err = e
				case ok:
					validUntil = now.Add(ttl)
					c.log.Info().Msg("took the upstream lease; connecting upstream")
					h = r.hold(ctx)
				default:
					// Try again as the holder's lease runs out, should it
					// not renew it.
					wait = min(tick, left+time.Duration(rand.N(int64(20*time.Millisecond))))
				}
			case now.Sub(quietSince) >= c.opts.Linger:
				if c.endIfIdle(r.gen) {
					r.idle = true
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && !failing:
			c.log.Warn().Err(err).Msg("cannot reach the shared store for the upstream lease; retrying")
			failing = true
		case err == nil && failing:
			c.log.Info().Msg("shared store reachable again")
			failing = false
		}
		timer.Reset(wait)
	}
}

// holding is the upstream of the lease holder: the connection, and the
// appender that writes its frames and state changes to the shared log.
type holding struct {
	r      *clusterRun
	cancel context.CancelFunc
	wg     sync.WaitGroup // the upstream run and appendLoop

	mu      sync.Mutex
	queue   []Record      // records not appended yet; guarded by mu
	dropped int           // frames dropped for a full queue; guarded by mu
	notify  chan struct{} // capacity 1: the queue has records
}

// hold connects the upstream and appends what it receives, until stop.
func (r *clusterRun) hold(ctx context.Context) *holding {
	c := r.c
	ctx, cancel := context.WithCancel(ctx)
	h := &holding{r: r, cancel: cancel, notify: make(chan struct{}, 1)}
	uo := c.opts.Upstream
	uo.Logger = c.log
	uo.OnFrame = h.frame
	uo.OnState = h.status
	h.wg.Go(func() {
		if err := upstream.Run(ctx, uo); err != nil {
			c.log.Error().Err(err).Msg("upstream cannot start; channel stays down")
			h.status(upstream.Status{State: upstream.StateDown, Err: err})
		}
	})
	h.wg.Go(func() { h.appendLoop(ctx) })
	c.setHolding(r.gen, true)
	return h
}

// stop disconnects the upstream and drops what was not appended.
func (h *holding) stop() {
	h.cancel()
	h.wg.Wait()
	h.mu.Lock()
	lost := len(h.queue) + h.dropped
	h.queue, h.dropped = nil, 0
	h.mu.Unlock()
	if lost > 0 {
		h.r.c.log.Warn().Int("records", lost).Msg("upstream frames lost: they could not be appended to the shared log")
	}
	h.r.c.setHolding(h.r.gen, false)
}

func (h *holding) frame(f upstream.Frame) {
	name := "message"
	if !f.Binary {
		name = eventName(f.Data, h.r.c.opts.EventField)
	}
	h.enqueue(Record{Name: name, Data: f.Data, Binary: f.Binary})
}

func (h *holding) status(s upstream.Status) {
	if s.State == upstream.StateConnecting {
		return
	}
	h.enqueue(Record{State: true, Data: noticeJSON(s)})
}

// enqueue queues rec for the appender. It never blocks: past the ring's
// size, frames are dropped and counted.
func (h *holding) enqueue(rec Record) {
	c := h.r.c
	h.mu.Lock()
	full := len(h.queue) >= c.ring.size
	if full {
		h.dropped++
	} else {
		h.queue = append(h.queue, rec)
	}
	first := full && h.dropped == 1
	h.mu.Unlock()
	if first {
		c.log.Warn().Int("queue", c.ring.size).Msg("the shared log does not keep up with the upstream; dropping frames")
	}
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// take removes up to n records from the head of the queue, and fewer when
// they would hold more than appendBytes.
func (h *holding) take(n int) []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	n = min(n, len(h.queue))
	size := 0
	for i, r := range h.queue[:n] {
		if size += len(r.Data); size > appendBytes && i > 0 {
			n = i
			break
		}
	}
	out := slices.Clone(h.queue[:n])
	h.queue = append(h.queue[:0], h.queue[n:]...)
	return out
}

// appendLoop appends queued records in batches, in order. A failed append
// is retried with backoff until ctx is done (the holder gives the lease up
// when it cannot renew it); an append refused because the lease is gone
// stops the loop and tells leaseLoop.
func (h *holding) appendLoop(ctx context.Context) {
	r := h.r
	bo := upstream.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	var batch uint64
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.notify:
		}
		for {
			recs := h.take(appendBatch)
			if len(recs) == 0 {
				break
			}
			batch++
			for {
				ok, err := r.log.Append(ctx, r.lease, batch, recs)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					if failing {
						r.c.log.Info().Msg("appending to the shared log again")
						failing = false
					}
					bo.Reset()
					if !ok {
						select {
						case r.lost <- struct{}{}:
						default:
						}
						return
					}
					break
				}
				if !failing {
					r.c.log.Warn().Err(err).Msg("failed to append to the shared log; retrying while the lease lasts")
					failing = true
				}
				if !sleep(ctx, bo.Next()) {
					return
				}
			}
		}
	}
}

// loadLog replaces the ring's contents with recs, the newest records of the
// shared log, and sets the upstream state. Subscribers, who could miss what
// the ring drops, are ended with ErrLost: they resume from their last id.
// It returns the id to read after, and false if run gen is over.
func (c *Channel) loadLog(gen uint64, recs []Record, state []byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed {
		return "", false
	}
	for len(c.subs) > 0 {
		c.endLocked(c.subs[len(c.subs)-1], ErrLost)
	}
	c.ring.reset()
	c.setStatusLocked(parseStatus(state), nil)
	for _, rec := range recs {
		if rec.State {
			continue // older than state
		}
		if k, ok := parseKey(rec.ID); ok {
			c.pushRecordLocked(rec, k)
		}
	}
	c.progressedLocked()
	if len(recs) > 0 {
		return recs[len(recs)-1].ID, true
	}
	if !c.lastTime.IsZero() {
		return c.last.String(), true
	}
	return "0-0", true
}

// syncStatus sets the upstream state as this node sees it, without a
// notice: down while it cannot read the shared log (it gets no events, even
// if the holder's upstream is up), then the holder's state again.
func (c *Channel) syncStatus(gen uint64, s upstream.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen && !c.closed {
		c.setStatusLocked(s, nil)
	}
}

// publishRecords publishes records read from the shared log. Records that
// are not after the newest event published are skipped.
func (c *Channel) publishRecords(gen uint64, recs []Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed {
		return
	}
	start := c.ring.head
	for _, rec := range recs {
		c.burst = c.ring.head - start // notices included
		if rec.State {
			c.setStatusLocked(parseStatus(rec.Data), rec.Data)
			continue
		}
		if k, ok := parseKey(rec.ID); ok && c.last.less(k) {
			c.pushRecordLocked(rec, k)
		}
	}
	c.burst = 0
	c.progressedLocked()
}

// progressedLocked wakes the subscriptions waiting for this node to read up
// to their resume id.
func (c *Channel) progressedLocked() {
	close(c.progress)
	c.progress = make(chan struct{})
}

// pushRecordLocked publishes a record of the shared log as an event. Its
// time is its id's.
func (c *Channel) pushRecordLocked(rec Record, k eventKey) {
	name := rec.Name
	if !sse.ValidName(name) || reservedNames[name] {
		name = "message"
	}
	t := time.UnixMilli(int64(min(k.ms, 1<<62)))
	e := &Event{
		ID: rec.ID, Name: name, Data: rec.Data, Binary: rec.Binary, Time: t, key: k,
		SSE:  encodeSSE(rec.ID, name, rec.Data, rec.Binary, c.opts.DropBinary),
		JSON: encodeJSON(rec.ID, name, rec.Data, rec.Binary),
	}
	c.last, c.lastTime = k, t
	c.n.eventsIn.Add(1)
	c.noteNameLocked(name)
	c.pushLocked(e)
}

// parseStatus reads the JSON of an "upstream" notice. No state means that no
// node holds the upstream: down.
func parseStatus(data []byte) upstream.Status {
	var n noticeData
	if data == nil || json.Unmarshal(data, &n) != nil {
		return upstream.Status{State: upstream.StateDown}
	}
	s := upstream.Status{State: upstream.StateDown}
	switch n.State {
	case upstream.StateUp.String():
		s.State = upstream.StateUp
	case upstream.StateConnecting.String():
		s.State = upstream.StateConnecting
	}
	if n.Error != "" {
		s.Err = errors.New(n.Error)
	}
	if n.RetryInMs != nil {
		s.RetryIn = time.Duration(*n.RetryInMs) * time.Millisecond
	}
	return s
}

// localClients returns the subscribers, and the subscriptions on their way.
func (c *Channel) localClients() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.subs) + c.pending
}

// activityLocked tells the lease loop that the channel gained its first
// subscriber or lost its last one.
func (c *Channel) activityLocked() {
	select {
	case c.activity <- struct{}{}:
	default:
	}
}

// setHolding records whether run gen holds the upstream lease.
func (c *Channel) setHolding(gen uint64, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.holding = v
	}
}

// endIfIdle stops run gen if the channel has no subscriber, nor one on its
// way, and reports whether it did.
func (c *Channel) endIfIdle(gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed || len(c.subs)+c.pending > 0 {
		return false
	}
	c.stopLocked()
	c.log.Info().Dur("linger", c.opts.Linger).Msg("no clients left; stopped following the shared log")
	return true
}

// awaitLog starts the channel's run if needed and waits, for at most
// syncWait, until it has loaded the shared log and, for a resume from
// lastID, has read up to it: a node that is behind (it just started, or was
// cut off from the store) must not call an id it has yet to read a gap. The
// caller's subscription counts as pending until Subscribe has added it.
func (c *Channel) awaitLog(lastID string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.pending++
	if len(c.subs)+c.pending == 1 {
		c.activityLocked()
	}
	if c.linger != nil {
		c.linger.Stop()
		c.linger = nil
	}
	c.startLocked()
	synced := c.synced
	c.mu.Unlock()
	t := time.NewTimer(syncWait)
	defer t.Stop()
	select {
	case <-synced:
	case <-t.C:
		c.log.Warn().Dur("waited", syncWait).Msg("the shared log is not loaded yet; serving a new client from what this node holds")
		return nil
	case <-c.ctx.Done():
		return nil
	}
	k, ok := parseKey(lastID)
	if !ok || k.ms > uint64(c.opts.Now().Add(time.Minute).UnixMilli()) {
		return nil // not an id the log can have
	}
	for {
		c.mu.RLock()
		behind, progress := c.last.less(k), c.progress
		c.mu.RUnlock()
		if !behind {
			return nil
		}
		select {
		case <-progress:
		case <-t.C:
			return nil
		case <-c.ctx.Done():
			return nil
		}
	}
}

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
