package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/upstream"
)

// Metrics are read from the channels' own counters when /metrics is
// scraped, so that counting costs the hot path nothing beyond an atomic add
// per write. Templated channels are summed under their template's name, so
// the number of series stays bounded by the configuration, not by clients.

var (
	descClients = prometheus.NewDesc("ws2sse_clients",
		"Connected clients.", []string{"channel", "transport"}, nil)
	descEventsIn = prometheus.NewDesc("ws2sse_events_in_total",
		"Events received from the upstream.", []string{"channel"}, nil)
	descEventsOut = prometheus.NewDesc("ws2sse_events_out_total",
		"Events written to clients.", []string{"channel", "transport"}, nil)
	descBytesOut = prometheus.NewDesc("ws2sse_bytes_out_total",
		"Bytes written to clients.", []string{"channel", "transport"}, nil)
	descWrites = prometheus.NewDesc("ws2sse_writes_total",
		"Writes of events to clients; events out per write is how many a write carries (an SSE client behind gets its backlog in one; a WebSocket message is a write of its own).",
		[]string{"channel", "transport"}, nil)
	descSlow = prometheus.NewDesc("ws2sse_slow_client_disconnects_total",
		"Clients disconnected for falling a full queue behind.", []string{"channel"}, nil)
	descUp = prometheus.NewDesc("ws2sse_upstream_up",
		"1 when the channel's upstream is connected. For a template, how many of its channels are.", []string{"channel"}, nil)
	descReconnects = prometheus.NewDesc("ws2sse_upstream_reconnects_total",
		"Upstream connections made after a channel's first.", []string{"channel"}, nil)
	descReplayHits = prometheus.NewDesc("ws2sse_replay_hits_total",
		"Resumes from an id still in the replay buffer.", []string{"channel"}, nil)
	descGaps = prometheus.NewDesc("ws2sse_gaps_total",
		"Resumes from an id not in the replay buffer (a gap event was sent).", []string{"channel"}, nil)
	descOpen = prometheus.NewDesc("ws2sse_channels_open",
		"Open channels of a configured channel (more than 1 for a template).", []string{"channel"}, nil)
)

type hubCollector struct {
	hub *bridge.Hub
	// groups are the templates' names, reported even while none of their
	// channels is open, so that their counters never vanish.
	groups []string
}

func (hc hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descEventsIn, descEventsOut, descBytesOut, descWrites,
		descSlow, descUp, descReconnects, descReplayHits, descGaps, descOpen} {
		ch <- d
	}
}

func (hc hubCollector) Collect(ch chan<- prometheus.Metric) {
	type total struct {
		stats     bridge.Stats
		up, open  int
		templated bool
	}
	totals := map[string]*total{}
	var order []string
	for _, g := range hc.groups {
		totals[g] = &total{templated: true}
		order = append(order, g)
	}
	open, retired := hc.hub.Snapshot()
	for _, c := range open {
		inf := c.Info()
		label := inf.Name
		if inf.Group != "" {
			label = inf.Group
		}
		t := totals[label]
		if t == nil {
			t = &total{templated: inf.Group != ""}
			totals[label] = t
			order = append(order, label)
		}
		t.stats.Add(inf.Stats)
		t.open++
		if inf.State.State == upstream.StateUp {
			t.up++
		}
	}
	for _, label := range order {
		t := totals[label]
		st := t.stats
		if t.templated {
			st.Add(retired[label])
		}
		counter := func(d *prometheus.Desc, v uint64, lv ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
		}
		gauge := func(d *prometheus.Desc, v int, lv ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), lv...)
		}
		for _, tr := range bridge.Transports {
			gauge(descClients, st.Clients[tr], label, tr.String())
			counter(descEventsOut, st.EventsOut[tr], label, tr.String())
			counter(descBytesOut, st.BytesOut[tr], label, tr.String())
			counter(descWrites, st.Writes[tr], label, tr.String())
		}
		counter(descEventsIn, st.EventsIn, label)
		counter(descSlow, st.SlowClients, label)
		counter(descReconnects, st.Reconnects, label)
		counter(descReplayHits, st.ReplayHits, label)
		counter(descGaps, st.Gaps, label)
		gauge(descUp, t.up, label)
		gauge(descOpen, t.open, label)
	}
}

// metricsHandler serves the channels' metrics with the Go runtime's and the
// process's.
func metricsHandler(hub *bridge.Hub, groups []string) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		hubCollector{hub, groups},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
