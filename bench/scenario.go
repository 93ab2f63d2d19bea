//go:build linux

package main

import (
	"fmt"
	"time"
)

// scenario is one load shape.
type scenario struct {
	Name       string
	Title      string
	Channels   int
	PerChannel int     // clients per channel
	Rate       float64 // events per second per channel; 0: idle
	WS         bool    // WebSocket clients instead of SSE
	Kind       string  // "steady", "slow" (a client stops reading) or "storm" (every client reconnects)
	NoBaseline bool    // the baseline does not serve it (it has no WebSocket side, no cluster mode)
	Nodes      int     // > 0: that many ws2sse processes sharing one redis-server, the clients spread evenly
	Curve      bool    // plotted on the chart
	Targets    []target
}

func (sc scenario) clients() int { return sc.Channels * sc.PerChannel }

// target is one requirement of the issue, checked against a run.
type target struct {
	What  string
	Check func(r *runResult, floor float64) (value string, pass bool)
}

// timing is how long each phase lasts.
type timing struct {
	RampRate float64       // new connections per second, all workers together
	Warmup   time.Duration // after the last connection, before the window
	Window   time.Duration // steady-state measurement
	Drain    time.Duration // after the window, for late events to arrive
	SlowMax  time.Duration // how long a stopped client may take to be dropped
	Storm    time.Duration // the window after a reconnect storm starts
}

var (
	fullTiming  = timing{RampRate: 2000, Warmup: 5 * time.Second, Window: 15 * time.Second, Drain: 2 * time.Second, SlowMax: 150 * time.Second, Storm: 15 * time.Second}
	quickTiming = timing{RampRate: 2000, Warmup: time.Second, Window: 3 * time.Second, Drain: time.Second, SlowMax: 60 * time.Second, Storm: 5 * time.Second}
)

// scenarios are the issue's, in its order, then a few more points for the
// chart and the WebSocket side.
func scenarios() []scenario {
	return []scenario{
		{Name: "idle-10k", Title: "10,000 idle SSE clients", Channels: 1, PerChannel: 10000, Kind: "steady",
			Targets: []target{rssPerClientAtMost(10 << 10)}},
		{Name: "fanout-5k", Title: "5,000 clients × 10 events/s", Channels: 1, PerChannel: 5000, Rate: 10, Kind: "steady", Curve: true,
			Targets: []target{noLoss(), p99AtMost(30 * time.Millisecond), cpuAtMost(1.25)}},
		{Name: "fanout-10k", Title: "10,000 clients × 10 events/s", Channels: 1, PerChannel: 10000, Rate: 10, Kind: "steady", Curve: true,
			Targets: []target{keepsUp(), noLoss(), p99AtMost(100 * time.Millisecond), cpuAtMost(1.25)}},
		{Name: "rate-1k", Title: "1,000 clients × 100 events/s", Channels: 1, PerChannel: 1000, Rate: 100, Kind: "steady",
			Targets: []target{noLoss(), p99AtMost(20 * time.Millisecond)}},
		{Name: "channels-1k", Title: "1,000 channels × 10 clients × 1 event/s", Channels: 1000, PerChannel: 10, Rate: 1, Kind: "steady",
			Targets: []target{noLoss(), p99AtMost(20 * time.Millisecond)}},
		{Name: "hold-19k", Title: "19,000 clients in one process (1 event/s)", Channels: 1, PerChannel: 19000, Rate: 1, Kind: "steady",
			Targets: []target{heldNoErrors()}},
		{Name: "slow-client", Title: "a client stopped reading among 10,000 (10 events/s)", Channels: 1, PerChannel: 10000, Rate: 10, Kind: "slow",
			Targets: []target{othersP99Unchanged(), slowDropped(), memoryBounded()}},
		{Name: "storm-10k", Title: "10,000 clients reconnect at once with Last-Event-ID (10 events/s)", Channels: 1, PerChannel: 10000, Rate: 10, Kind: "storm",
			Targets: []target{stormNoGap(), stormTime()}},
		{Name: "curve-1k", Title: "1,000 clients × 10 events/s", Channels: 1, PerChannel: 1000, Rate: 10, Kind: "steady", Curve: true},
		{Name: "curve-2k", Title: "2,000 clients × 10 events/s", Channels: 1, PerChannel: 2000, Rate: 10, Kind: "steady", Curve: true},
		{Name: "curve-15k", Title: "15,000 clients × 10 events/s", Channels: 1, PerChannel: 15000, Rate: 10, Kind: "steady", Curve: true},
		{Name: "ws-5k", Title: "5,000 WebSocket clients × 10 events/s", Channels: 1, PerChannel: 5000, Rate: 10, WS: true, Kind: "steady", NoBaseline: true,
			Targets: []target{noLoss(), p99AtMost(30 * time.Millisecond)}},
		{Name: "cluster-3x", Title: "3 processes sharing Redis, 3,000 clients × 10 events/s", Channels: 1, PerChannel: 3000, Rate: 10, Kind: "steady",
			Nodes: 3, NoBaseline: true,
			Targets: []target{oneUpstream(), noLoss(), sameIDs()}},
	}
}

// quick scales a scenario down for -quick: a fifth of the clients (of the
// channels when there are many).
func (sc scenario) quick() scenario {
	if sc.Channels > 1 {
		sc.Channels = max(sc.Channels/5, 1)
	} else {
		sc.PerChannel = max(sc.PerChannel/5, 1)
	}
	return sc
}

func p99AtMost(d time.Duration) target {
	return target{What: fmt.Sprintf("p99 ≤ %g ms", d.Seconds()*1000), Check: func(r *runResult, _ float64) (string, bool) {
		if r.Latency.N == 0 {
			return "no events", false
		}
		return fmtMs(r.Latency.P99), r.Latency.P99 <= d.Seconds()*1000
	}}
}

// noLoss: every event of the window arrived, none twice, in order, with no
// connection lost.
func noLoss() target {
	return target{What: "no loss, duplicate or reorder", Check: func(r *runResult, _ float64) (string, bool) {
		ok := r.Lost == 0 && r.Dup == 0 && r.Reorder == 0 && r.Gaps == 0 && r.Closed == 0 && r.Delivered == r.Expected && r.Expected > 0
		return fmt.Sprintf("%s delivered, %d lost, %d dup, %d reordered", fmtRatio(r.Delivered, r.Expected), r.Lost, r.Dup, r.Reorder), ok
	}}
}

func keepsUp() target {
	return target{What: "keeps up: delivered = published × clients", Check: func(r *runResult, _ float64) (string, bool) {
		want := r.Published * int64(r.Streaming)
		return fmt.Sprintf("%s of %s", fmtInt(r.Delivered), fmtInt(want)), r.Delivered == want && want > 0
	}}
}

func cpuAtMost(x float64) target {
	return target{What: fmt.Sprintf("CPU per delivery ≤ %.2f × floor", x), Check: func(r *runResult, floor float64) (string, bool) {
		if r.CPUPerDelivery == 0 || floor == 0 {
			return "n/a", false
		}
		m := r.CPUPerDelivery / floor
		return fmt.Sprintf("%.2f µs = %.2f × floor", r.CPUPerDelivery, m), m <= x
	}}
}

func rssPerClientAtMost(b float64) target {
	return target{What: fmt.Sprintf("RSS per client ≤ %s", fmtBytes(b)), Check: func(r *runResult, _ float64) (string, bool) {
		return fmtBytes(r.RSSPerClient), r.RSSPerClient <= b && r.Streaming > 0
	}}
}

func heldNoErrors() target {
	return target{What: "all held, no errors", Check: func(r *runResult, _ float64) (string, bool) {
		errs := 0
		for _, n := range r.Errors {
			errs += n
		}
		ok := r.Streaming == r.Clients && r.ConnFailed == 0 && r.Closed == 0 && errs == 0 && r.Delivered == r.Expected
		return fmt.Sprintf("%s of %s streaming, %d errors, %s delivered", fmtInt(int64(r.Streaming)), fmtInt(int64(r.Clients)), errs, fmtRatio(r.Delivered, r.Expected)), ok
	}}
}

// othersP99Unchanged: the other clients' p99 while one client is stopped
// is within 25% or 5 ms (whichever is larger) of their p99 before.
func othersP99Unchanged() target {
	return target{What: "the others' p99 unchanged (within 25% or 5 ms)", Check: func(r *runResult, _ float64) (string, bool) {
		s := r.Slow
		if s == nil || s.P99Before == 0 {
			return "n/a", false
		}
		return fmt.Sprintf("%s before, %s while stopped", fmtMs(s.P99Before), fmtMs(s.P99During)),
			s.P99During <= max(s.P99Before*1.25, s.P99Before+5)
	}}
}

func slowDropped() target {
	return target{What: "the stopped client dropped", Check: func(r *runResult, _ float64) (string, bool) {
		s := r.Slow
		if s == nil || !s.Dropped {
			return "not dropped within the run", false
		}
		v := fmt.Sprintf("after %.1f s", s.DropAfter)
		if s.ClientSawClose {
			v += "; the client saw its stream end"
		}
		return v, true
	}}
}

// memoryBounded: the server's RSS while one client is stopped stays within
// 10% (plus 8 MiB) of its peak over the same time with every client
// reading, which leaves room for the garbage collector's swings but not
// for a queue that grows with time.
func memoryBounded() target {
	return target{What: "memory bounded (peak RSS while stopped ≤ 1.1 × peak before + 8 MiB)", Check: func(r *runResult, _ float64) (string, bool) {
		s := r.Slow
		if s == nil || s.RSSBeforeStop == 0 {
			return "n/a", false
		}
		return fmt.Sprintf("%s before, %s while stopped", fmtBytes(float64(s.RSSBeforeStop)), fmtBytes(float64(s.RSSMax))),
			float64(s.RSSMax) <= 1.1*float64(s.RSSBeforeStop)+8<<20
	}}
}

func stormNoGap() target {
	return target{What: "all resume with no gap", Check: func(r *runResult, _ float64) (string, bool) {
		s := r.Storm
		if s == nil {
			return "n/a", false
		}
		ok := s.Live == s.Conns && s.Conns > 0 && r.Lost == 0 && r.Dup == 0 && r.Reorder == 0 && r.Gaps == 0 && r.Delivered == r.Expected
		return fmt.Sprintf("%s of %s live again; %d lost, %d dup, %d gap events", fmtInt(int64(s.Live)), fmtInt(int64(s.Conns)), r.Lost, r.Dup, r.Gaps), ok
	}}
}

func stormTime() target {
	return target{What: "time until all are live again (reported)", Check: func(r *runResult, _ float64) (string, bool) {
		s := r.Storm
		if s == nil || s.Live < s.Conns || s.Conns == 0 {
			return "not all live", false
		}
		return fmt.Sprintf("%s (all reconnected: %s)", fmtMs(s.LiveMax), fmtMs(s.ReconnectMax)), true
	}}
}
