package bridge

import (
	"sync/atomic"
	"time"
)

// SubscribeOptions say where a new subscription starts.
type SubscribeOptions struct {
	// Transport is how the client is served, for counting.
	Transport Transport
	// LastEventID is the id the client saw last; empty for a client that
	// is not resuming.
	LastEventID string
	// OnEnd, if set, is called when the channel ends the subscription
	// (slow client, channel closed), with the channel's lock held: it must
	// only nudge the client's writer, e.g. expire a write deadline.
	OnEnd func(error)
}

// Subscription is one client's position in a channel.
type Subscription struct {
	c         *Channel
	num       uint64        // for log lines
	transport Transport     // for counting
	wake      chan struct{} // capacity 1: events are due
	done      chan struct{} // closed when the channel ends the subscription
	next      atomic.Uint64 // sequence number of the next event due; written by Read
	join      uint64        // the channel's head when subscribed; notices before it are skipped

	// Set at subscription and read-only after.
	resumeGap bool   // the resume id was unknown: the client must be told
	lastID    string // the resume id as given

	// Guarded by c.mu.
	idx   int   // position in c.subs; -1 once ended
	err   error // why it ended
	onEnd func(error)
}

// Subscribe adds a subscriber. With a LastEventID still in the replay
// buffer, the first events it reads are exactly the ones after that id; with
// an unknown one, everything the buffer holds, and Gap reports it. This is
// atomic with publication: no event is missed or repeated in between.
//
// With a Store, Subscribe first waits, for a few seconds at most, until this
// process has loaded the shared log and read up to LastEventID, so that an
// id issued by another process is found.
func (c *Channel) Subscribe(o SubscribeOptions) (*Subscription, error) {
	if c.shared != nil {
		if err := c.awaitLog(o.LastEventID); err != nil {
			return nil, err
		}
	}
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shared != nil {
		c.pending--
	}
	if c.closed {
		return nil, ErrClosed
	}
	s := &Subscription{
		c:         c,
		num:       c.n.subscriptions.Add(1),
		transport: o.Transport,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		join:      c.ring.head,
		onEnd:     o.OnEnd,
	}
	from := c.windowLocked(now)
	next := c.ring.head
	if o.LastEventID != "" {
		s.lastID = o.LastEventID
		if seq, ok := c.findLocked(from, o.LastEventID); ok {
			next = seq + 1
			c.n.replayHits.Add(1)
		} else {
			next, s.resumeGap = from, true
			c.n.gaps.Add(1)
		}
	} else if n := c.opts.ReplayOnConnect; n > 0 {
		for next > from && n > 0 {
			next--
			if !c.ring.at(next).notice {
				n--
			}
		}
	}
	s.next.Store(next)
	s.idx = len(c.subs)
	c.subs = append(c.subs, s)
	if c.shared != nil && len(c.subs)+c.pending == 1 {
		c.activityLocked()
	}
	c.clients[s.transport]++
	if c.linger != nil {
		c.linger.Stop()
		c.linger = nil
	}
	c.startLocked()
	if next < c.ring.head {
		s.wake <- struct{}{}
	}
	return s, nil
}

// windowLocked returns the first sequence number that may be replayed:
// within the last Replay events and no older than ReplayAge.
func (c *Channel) windowLocked(now time.Time) uint64 {
	r := &c.ring
	from := r.tail
	if n := uint64(c.opts.Replay); r.head-from > n {
		from = r.head - n
	}
	oldest := now.Add(-c.opts.ReplayAge)
	for from < r.head && r.at(from).Time.Before(oldest) {
		from++
	}
	return from
}

// findLocked returns the sequence number of the event with the given id if
// it is within [from, head).
func (c *Channel) findLocked(from uint64, id string) (uint64, bool) {
	k, ok := parseKey(id)
	if !ok {
		return 0, false
	}
	seq := c.ring.search(from, k)
	if seq == c.ring.head {
		return 0, false
	}
	e := c.ring.at(seq)
	return seq, !e.notice && e.key == k
}

// Wake is signalled when events may be due; call Read then.
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Done is closed when the channel ends the subscription; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the channel ended the subscription, or nil.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Gap reports whether the subscription resumed from an id the buffer did
// not hold, and that id. The client should be told before the first event.
func (s *Subscription) Gap() (lastEventID string, ok bool) { return s.lastID, s.resumeGap }

// Read appends the events due to dst, in order, and marks them read. It
// returns the subscription's error once the channel has ended it, and
// nothing once it is closed. Events are shared and must not be modified.
func (s *Subscription) Read(dst []*Event) ([]*Event, error) {
	c := s.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	if s.idx < 0 { // ended, or closed
		return dst, s.err
	}
	r := &c.ring
	next := s.next.Load()
	if next < r.tail {
		// The events it had not read yet were dropped for age or room.
		return dst, ErrSlowClient
	}
	for seq := next; seq < r.head; seq++ {
		if e := r.at(seq); !e.notice || seq >= s.join {
			dst = append(dst, e)
		}
	}
	s.next.Store(r.head)
	return dst, nil
}

// Close removes the subscription. A lazy channel left with no subscriber
// disconnects after its linger time.
func (s *Subscription) Close() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.idx >= 0 {
		c.removeLocked(s)
	}
}

// endLocked ends s on the channel's side.
func (c *Channel) endLocked(s *Subscription, err error) {
	c.removeLocked(s)
	s.err = err
	close(s.done)
	if s.onEnd != nil {
		s.onEnd(err)
	}
}

func (c *Channel) removeLocked(s *Subscription) {
	last := len(c.subs) - 1
	c.subs[s.idx] = c.subs[last]
	c.subs[s.idx].idx = s.idx
	c.subs[last] = nil
	c.subs = c.subs[:last]
	c.clients[s.transport]--
	s.idx = -1
	if len(c.subs) == 0 && c.opts.Lazy && !c.closed && c.stop != nil {
		if c.shared == nil {
			c.scheduleLingerLocked()
		} else if c.pending == 0 {
			c.activityLocked() // the cluster run decides when to stop
		}
	}
}

func (c *Channel) scheduleLingerLocked() {
	var t *time.Timer
	t = time.AfterFunc(c.opts.Linger, func() {
		c.mu.Lock()
		idle := c.linger == t && len(c.subs)+c.pending == 0 && !c.closed
		if idle {
			c.linger = nil
			c.stopLocked()
			c.log.Info().Dur("linger", c.opts.Linger).Msg("no clients left; upstream disconnected")
		}
		c.mu.Unlock()
		if idle && c.opts.OnIdle != nil {
			c.opts.OnIdle(c)
		}
	})
	c.linger = t
}
