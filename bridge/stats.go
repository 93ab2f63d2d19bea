package bridge

import "sync/atomic"

// Transport names the way a subscriber is served, for counting.
type Transport uint8

// Transports.
const (
	TransportSSE Transport = iota
	TransportWebSocket
	numTransports
)

func (t Transport) String() string {
	switch t {
	case TransportSSE:
		return "sse"
	case TransportWebSocket:
		return "websocket"
	}
	return "unknown"
}

// Transports lists every transport, for reporting.
var Transports = []Transport{TransportSSE, TransportWebSocket}

// Stats are a channel's counters. Counters only grow; Clients is a gauge.
type Stats struct {
	EventsIn      uint64 // events published
	SlowClients   uint64 // subscribers ended for falling a queue behind
	Subscriptions uint64 // subscriptions made
	Reconnects    uint64 // upstream connections made after the first
	ReplayHits    uint64 // resumes from an id the buffer held
	Gaps          uint64 // resumes from an id it did not hold
	// Per transport, indexed by Transport.
	Clients   [numTransports]int
	EventsOut [numTransports]uint64 // events written to clients
	Writes    [numTransports]uint64 // writes that carried them: an SSE client behind gets its backlog in one
	BytesOut  [numTransports]uint64 // bytes written to clients
}

// Add adds o's counters and gauges to s.
func (s *Stats) Add(o Stats) {
	s.EventsIn += o.EventsIn
	s.SlowClients += o.SlowClients
	s.Subscriptions += o.Subscriptions
	s.Reconnects += o.Reconnects
	s.ReplayHits += o.ReplayHits
	s.Gaps += o.Gaps
	for i := range s.Clients {
		s.Clients[i] += o.Clients[i]
		s.EventsOut[i] += o.EventsOut[i]
		s.Writes[i] += o.Writes[i]
		s.BytesOut[i] += o.BytesOut[i]
	}
}

// counters are a channel's live counters; atomics, so that no lock is
// taken to count.
type counters struct {
	eventsIn, slow, subscriptions, reconnects, replayHits, gaps atomic.Uint64
	eventsOut, bytesOut, writes                                 [numTransports]atomic.Uint64
}

// Delivered counts one write of events and bytes to the subscriber's
// client. Call it once per write, not per event.
func (s *Subscription) Delivered(events, bytes int) {
	s.c.Delivered(s.transport, 1, events, bytes)
}

// Delivered counts writes of events and bytes to clients of a transport:
// a writer serving many subscriptions counts them all at once.
func (c *Channel) Delivered(t Transport, writes, events, bytes int) {
	c.n.writes[t].Add(uint64(writes))
	c.n.eventsOut[t].Add(uint64(events))
	c.n.bytesOut[t].Add(uint64(bytes))
}
