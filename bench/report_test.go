//go:build linux

package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func sampleResults() *results {
	run := func(kind string, clients int, cpu, p99 float64) runResult {
		return runResult{Server: kind, Clients: clients, Channels: 1, Rate: 10, Streaming: clients, RampSecs: 2.5,
			WindowSecs: 15, Published: 150, Expected: 150 * int64(clients), Delivered: 150 * int64(clients),
			Latency: latency{N: 150 * uint64(clients), P50: p99 / 3, P99: p99, P999: p99 * 1.2, Max: p99 * 1.5},
			CPU:     cpu * 150 * float64(clients) / 1e6, CPUPerDelivery: cpu, RSSBefore: 10 << 20, RSSAfter: 10<<20 + int64(clients)*20<<10,
			RSSPerClient: 20 << 10, Errors: map[string]int{}, Attempts: 1,
			After: metrics{Goroutines: 2*float64(clients) + 10, GCPause: map[string]float64{"0.5": 0.0002, "1": 0.001}}}
	}
	return &results{
		Command: "go run ./bench -scenarios fanout-5k,fanout-10k,ws-5k", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 600,
		Machine: machine{CPUs: 2, CPUModel: "Test CPU", MemTotal: 24 << 30, Kernel: "6.1", Go: "go1.26", Commit: "abc123"},
		Floor:   floorResult{Conns: 2000, Writes: 200000, Runs: []float64{9, 9.1, 8.9}, PerWrite: 9, WallPerOp: 9.5},
		Order:   []string{"fanout-5k", "fanout-10k", "ws-5k"},
		Runs: map[string][]runResult{
			"fanout-5k":  {run("ws2sse", 5000, 10.5, 12), run("baseline", 5000, 14, 25)},
			"fanout-10k": {run("ws2sse", 10000, 12, 140), {Server: "baseline", Err: "clients still connecting"}},
			"ws-5k":      {run("ws2sse", 5000, 13, 20), {Server: "baseline", Skipped: "the baseline serves SSE only"}},
		},
		Timing: map[string]float64{"rampRate": 2000, "warmup": 5, "window": 15, "drain": 2, "slowMax": 150, "storm": 15},
	}
}

func TestRenderReport(t *testing.T) {
	md := renderReport(sampleResults(), "bench/chart.svg", "bench/results.json")
	for _, want := range []string{
		"go run ./bench -scenarios fanout-5k,fanout-10k,ws-5k", // the command that made the numbers
		"| 5,000 clients × 10 events/s | p99 ≤ 30 ms | 12.0 ms | pass | 25.0 ms | pass |",
		"| 5,000 clients × 10 events/s | CPU per delivery ≤ 1.25 × floor | 10.50 µs = 1.17 × floor | pass | 14.00 µs = 1.56 × floor | **FAIL** |",
		"| 10,000 clients × 10 events/s | p99 ≤ 100 ms | 140.0 ms | **FAIL** | run failed: clients still connecting | **FAIL** |",
		"the baseline serves SSE only",
		"![CPU per delivery and p99 latency against the number of clients, ws2sse and the baseline](bench/chart.svg)",
		"**9.00 µs** of CPU per write(2)",
		"| CPU per delivery | 10.50 µs = 1.17 × floor | 14.00 µs = 1.56 × floor | 0.75 |",
		"Rerun: `go run ./bench -scenarios fanout-10k -merge bench/results.json`",
		"| CPU | Test CPU, 2 CPUs (nproc) |",
		"## Method",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestRenderChart(t *testing.T) {
	svg := renderChart(sampleResults())
	d := xml.NewDecoder(strings.NewReader(svg))
	lines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	// Two panels; ws2sse has three curve points, the baseline one.
	if lines != 4 {
		t.Errorf("%d polylines, want 4 (2 servers × 2 panels)", lines)
	}
	for _, want := range []string{"CPU per delivery (µs)", "p99 latency (ms, log scale)", "floor (9.00 µs)"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the chart lacks %q", want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{fmtInt(0), "0"}, {fmtInt(999), "999"}, {fmtInt(1000), "1,000"}, {fmtInt(-1234567), "-1,234,567"},
		{fmtBytes(512), "512 B"}, {fmtBytes(10 << 10), "10.0 KiB"}, {fmtBytes(3 << 20), "3.0 MiB"},
		{fmtMs(0.5), "0.50 ms"}, {fmtMs(25.25), "25.2 ms"}, {fmtMs(1500), "1.50 s"},
		{fmtRatio(5, 5), "5 / 5 (100%)"}, {fmtRatio(1, 2), "1 / 2 (50.00%)"},
		{tickLabel(0.05), "0.05"}, {tickLabel(2.5), "2.5"}, {tickLabel(100), "100"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if niceCeil(7.3) != 10 || niceCeil(1.2) != 2 || niceCeil(230) != 250 {
		t.Errorf("niceCeil: %v %v %v", niceCeil(7.3), niceCeil(1.2), niceCeil(230))
	}
}

func TestParseProc(t *testing.T) {
	stat := "4242 (ws2sse (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 3250*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25s", cpu, err)
	}
	prom := `# HELP go_goroutines Number of goroutines.
go_goroutines 20013
go_memstats_heap_inuse_bytes 1.2345e+08
go_gc_duration_seconds{quantile="0.5"} 0.00025
go_gc_duration_seconds{quantile="1"} 0.0031
ws2sse_clients{channel="feed-0",transport="sse"} 9999
ws2sse_clients{channel="feed-0",transport="websocket"} 1
ws2sse_slow_client_disconnects_total{channel="feed-0"} 2
ws2sse_events_out_total{channel="feed-0",transport="sse"} 900
ws2sse_events_out_total{channel="feed-0",transport="websocket"} 100
ws2sse_writes_total{channel="feed-0",transport="sse"} 300
ws2sse_writes_total{channel="feed-0",transport="websocket"} 100
`
	m, err := parseMetrics(strings.NewReader(prom))
	if err != nil {
		t.Fatal(err)
	}
	if m.Goroutines != 20013 || m.HeapInuse != 1.2345e8 || m.GCPause["0.5"] != 0.00025 || m.GCPause["1"] != 0.0031 ||
		m.Clients != 10000 || m.Slow != 2 || m.EventsOut != 1000 || m.Writes != 400 {
		t.Fatalf("parseMetrics = %+v", m)
	}
}

func TestJobsSpreadClients(t *testing.T) {
	sc := scenario{Channels: 3, PerChannel: 7001}
	js := jobs(sc, "127.0.0.1:1", sc.clients(), 2000, 0)
	if len(js) != 5 { // 21,003 clients, at most 5,000 each
		t.Fatalf("%d workers, want 5", len(js))
	}
	total, rate := 0, 0.0
	perChannel := map[int]int{}
	for _, j := range js {
		n := 0
		for _, g := range j.Groups {
			n += g.N
			perChannel[g.Channel] += g.N
		}
		if n > perWorker {
			t.Errorf("worker %d holds %d", j.Worker, n)
		}
		total += n
		rate += j.Rate
	}
	if total != 21003 || rate != 2000 || perChannel[0] != 7001 || perChannel[2] != 7001 {
		t.Fatalf("total %d, rate %v, per channel %v", total, rate, perChannel)
	}
}
