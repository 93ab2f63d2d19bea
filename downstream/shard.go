package downstream

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ws2sse/ws2sse/bridge"
)

// A channel's HTTP/1 SSE streams are written by its shards: a few
// goroutines (at most one per CPU), each serving a list of streams. When
// the channel publishes, a shard reads every one of its streams'
// subscriptions and gives each socket what is due in one write(2) that
// never blocks. An idle stream then costs no goroutine, and a delivery
// costs that one system call and little else: no goroutine is woken and no
// timer or deadline is touched per client.
//
// A socket that does not take the whole write is full: its client reads
// slower than the feed. The rest is kept, and the stream is handed to a
// goroutine of its own that writes it with a deadline (streamSSE) and,
// once it has caught up and its socket has room, hands it back. The
// channel still ends it if it falls a full queue behind.

// shardFill is how many streams a shard takes before the next one of the
// channel is used: a small channel keeps one goroutine, a large one spreads
// over every CPU.
const shardFill = 128

// fanout is one channel's shards.
type fanout struct {
	ch      *bridge.Channel
	shards  []*shard
	running int // shards with a goroutine; guarded by Server.fanMu
}

// shard writes a list of a channel's streams.
type shard struct {
	s    *Server
	f    *fanout
	wake chan struct{} // capacity 1: events published, a stream added or ended
	load atomic.Int32  // streams in added and clients

	running bool // guarded by Server.fanMu

	mu    sync.Mutex
	added []*session // streams to take, guarded by mu

	// Owned by the shard's goroutine.
	clients []*session
	events  []*bridge.Event // read buffer
	// batch is the SSE bytes of the events the last stream read. Streams
	// in step read the same events, which are encoded once per pass.
	// A list read is known by its first and last event and its length:
	// two reads that agree on those hold the same events.
	batch       []byte
	first, last *bridge.Event
	batchLen    int // events read
	batchN      int // events in batch
	scratch     []byte
	writes      int // writes of events in this pass
	delivered   int // events counted in this pass
	bytesOut    int
}

// addDirect has the channel's shards write ss, a taken-over stream with a
// raw connection, from now on. (A shard writes to the socket directly: the
// connection's write deadline does not apply.)
func (s *Server) addDirect(ss *session) {
	s.fanMu.Lock()
	f := s.fanouts[ss.ch]
	if f == nil {
		f = &fanout{ch: ss.ch, shards: make([]*shard, runtime.GOMAXPROCS(0))}
		for i := range f.shards {
			f.shards[i] = newShard(s, f)
		}
		s.fanouts[ss.ch] = f
	}
	sh := f.pick()
	sh.load.Add(1)
	ss.home.Store(sh)
	sh.mu.Lock()
	sh.added = append(sh.added, ss)
	sh.mu.Unlock()
	start := !sh.running
	if start {
		sh.running = true
		f.running++
	}
	s.fanMu.Unlock()
	if start {
		// Outside fanMu, which would otherwise wait for the channel's lock
		// while it fans out. A shard that stops meanwhile removes its own
		// registration of the same wake channel, and leaves this one.
		stop := f.ch.Notify(sh.wake)
		s.streams.Go(func() { sh.run(stop) })
	}
	sh.nudge()
}

// pick returns the first shard with room under shardFill, else the least
// loaded.
func (f *fanout) pick() *shard {
	best := f.shards[0]
	for _, sh := range f.shards {
		n := sh.load.Load()
		if n < shardFill {
			return sh
		}
		if n < best.load.Load() {
			best = sh
		}
	}
	return best
}

func newShard(s *Server, f *fanout) *shard {
	return &shard{s: s, f: f, wake: make(chan struct{}, 1)}
}

// nudge has the shard make a pass over its streams.
func (sh *shard) nudge() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// run makes a pass over the shard's streams whenever the channel publishes,
// a stream comes or ends, a heartbeat is due or the server shuts down, and
// returns once the shard has no stream left. stopNotify ends its
// registration with the channel.
func (sh *shard) run(stopNotify func()) {
	defer stopNotify()
	s := sh.s
	heartbeat := time.NewTimer(s.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		shutdown := false
		select {
		case <-sh.wake:
		case <-heartbeat.C:
		case <-s.shutdown:
			shutdown = true
		}
		sh.mu.Lock()
		sh.clients = append(sh.clients, sh.added...)
		clear(sh.added)
		sh.added = sh.added[:0]
		sh.mu.Unlock()

		now := time.Now()
		oldest := sh.pass(now, shutdown)
		if len(sh.clients) == 0 && sh.exit() {
			return
		}
		// The next heartbeat is due when the stream written longest ago has
		// been quiet for Heartbeat. Up to a tenth more is waited for, so
		// that streams that went quiet about together share a pass.
		heartbeat.Reset(oldest.Add(s.opts.Heartbeat + s.opts.Heartbeat/10).Sub(now))
	}
}

// pass serves every stream once and returns when the stream written
// longest ago was written.
func (sh *shard) pass(now time.Time, shutdown bool) (oldest time.Time) {
	oldest = now
	for i := 0; i < len(sh.clients); {
		ss := sh.clients[i]
		if sh.serve(ss, now, shutdown) {
			if ss.lastWrite.Before(oldest) {
				oldest = ss.lastWrite
			}
			i++
			continue
		}
		last := len(sh.clients) - 1
		sh.clients[i] = sh.clients[last]
		sh.clients[last] = nil
		sh.clients = sh.clients[:last]
		sh.load.Add(-1)
	}
	sh.first, sh.last, sh.batchLen = nil, nil, 0 // not to keep the events alive
	if sh.delivered > 0 || sh.bytesOut > 0 {
		sh.f.ch.Delivered(bridge.TransportSSE, sh.writes, sh.delivered, sh.bytesOut)
		sh.writes, sh.delivered, sh.bytesOut = 0, 0, 0
	}
	return oldest
}

// serve gives ss what is due and reports whether the shard keeps it: not
// once it ended, nor when its socket is full and it went to a goroutine of
// its own.
func (sh *shard) serve(ss *session, now time.Time, shutdown bool) bool {
	s := sh.s
	if ss.gone.Load() {
		ss.end(endClientLeft)
		return false
	}
	if shutdown {
		s.writeShortRetry(ss)
		ss.end(endShutdown)
		return false
	}
	events, err := ss.sub.Read(sh.events[:0])
	if err != nil {
		ss.end(s.endSSE(ss, err))
		return false
	}
	out, n := sh.encode(ss, events)
	clear(events) // not to keep them alive
	sh.events = events[:0]
	if len(out) == 0 {
		if now.Sub(ss.lastWrite) < s.opts.Heartbeat {
			return true
		}
		out = heartbeatComment
	}
	ss.lastWrite = now
	w, err := ss.writeNow(out)
	if err != nil {
		ss.end(s.writeFailed(ss))
		return false
	}
	if n > 0 {
		sh.bytesOut += w
	}
	if w < len(out) {
		// The socket is full: the rest goes out from a goroutine that
		// may wait for it.
		ss.pending = append(ss.pending[:0], out[w:]...)
		ss.pendingEvents = n
		ss.home.Store(nil)
		s.spills.Add(1)
		s.streams.Go(func() { s.drain(ss) })
		return false
	}
	ss.events += uint64(n)
	sh.delivered += n
	if n > 0 {
		sh.writes++
	}
	return true
}

// encode returns the SSE bytes of events for ss and how many events they
// hold. Streams in step share one encoding per pass.
func (sh *shard) encode(ss *session, events []*bridge.Event) ([]byte, int) {
	if len(events) == 0 {
		return nil, 0
	}
	if ss.gap {
		var n int
		sh.scratch, n = ss.appendEvents(sh.scratch[:0], events)
		return sh.scratch, n
	}
	first, last := events[0], events[len(events)-1]
	if first != sh.first || last != sh.last || len(events) != sh.batchLen {
		sh.batch, sh.batchN = ss.appendEvents(sh.batch[:0], events)
		sh.first, sh.last, sh.batchLen = first, last, len(events)
	}
	return sh.batch, sh.batchN
}

// exit stops the shard if no stream came meanwhile, and reports whether it
// did.
func (sh *shard) exit() bool {
	s := sh.s
	s.fanMu.Lock()
	defer s.fanMu.Unlock()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.added) > 0 {
		return false
	}
	sh.running = false
	sh.f.running--
	if sh.f.running == 0 {
		delete(s.fanouts, sh.f.ch)
	}
	// Buffers that grew for a backlog are not kept while idle.
	sh.events, sh.batch, sh.scratch = nil, nil, nil
	return true
}

// drain writes what a full socket did not take from a goroutine of the
// stream's own, under the write deadline, then goes on like any stream
// with a goroutine until it has caught up, and hands it back to a shard.
func (s *Server) drain(ss *session) {
	defer ss.cutOnClose()()
	ss.deadline = time.Time{}
	if err := ss.write(ss.pending); err != nil {
		ss.end(s.writeFailed(ss))
		return
	}
	ss.events += uint64(ss.pendingEvents)
	if ss.pendingEvents > 0 {
		ss.sub.Delivered(ss.pendingEvents, len(ss.pending))
	}
	ss.pending, ss.pendingEvents = nil, 0
	reason, caughtUp := s.streamSSE(ss, true)
	if caughtUp {
		s.addDirect(ss)
		return
	}
	ss.end(reason)
}
