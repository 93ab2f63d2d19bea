//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// writeReport writes the Markdown report and the chart it links.
func writeReport(o options, res *results) error {
	link := o.chart
	if rel, err := filepath.Rel(filepath.Dir(o.out), o.chart); err == nil {
		link = filepath.ToSlash(rel)
	}
	if o.chart != "" {
		if err := os.WriteFile(o.chart, []byte(renderChart(res)), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(o.out, []byte(renderReport(res, link, o.results)), 0o644)
}

func fmtMs(ms float64) string {
	switch {
	case ms == 0:
		return "0 ms"
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

func fmtBytes(b float64) string {
	neg := ""
	if b < 0 {
		neg, b = "-", -b
	}
	switch {
	case b < 1<<10:
		return fmt.Sprintf("%s%.0f B", neg, b)
	case b < 1<<20:
		return fmt.Sprintf("%s%.1f KiB", neg, b/(1<<10))
	case b < 1<<30:
		return fmt.Sprintf("%s%.1f MiB", neg, b/(1<<20))
	default:
		return fmt.Sprintf("%s%.2f GiB", neg, b/(1<<30))
	}
}

// fmtInt writes n with thousands separators.
func fmtInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRatio(got, want int64) string {
	if want == 0 {
		return fmt.Sprintf("%s / 0", fmtInt(got))
	}
	pct := 100 * float64(got) / float64(want)
	p := fmt.Sprintf("%.2f%%", pct)
	if got == want {
		p = "100%"
	} else if pct > 99.99 && pct < 100 {
		p = ">99.99%"
	}
	return fmt.Sprintf("%s / %s (%s)", fmtInt(got), fmtInt(want), p)
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

// find returns the run of a server in a scenario.
func find(runs []runResult, kind string) *runResult {
	for i := range runs {
		if runs[i].Server == kind {
			return &runs[i]
		}
	}
	return nil
}

func usable(r *runResult) bool { return r != nil && r.Err == "" && r.Skipped == "" }

func scenarioByName(name string) (scenario, bool) {
	for _, sc := range scenarios() {
		if sc.Name == name {
			return sc, true
		}
	}
	return scenario{}, false
}

func renderReport(res *results, chartLink, resultsPath string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	times := func(r *runResult, us float64) string {
		floor := res.floorFor(r)
		if us == 0 {
			return "n/a"
		}
		if floor == 0 {
			return fmt.Sprintf("%.2f µs", us)
		}
		return fmt.Sprintf("%.2f µs = %.2f × floor", us, us/floor)
	}

	p("# Benchmarks\n\n")
	p("Every number in this file was produced by one run of\n\n```sh\n%s\n```\n\n", res.Command)
	if reruns := res.reruns(); len(reruns) > 0 {
		p("except the runs that these commands made again, merged into the results (each is named in its scenario below):\n\n```sh\n%s\n```\n\n", strings.Join(reruns, "\n"))
	}
	p("The first run started %s and took %s, against ws2sse `%s`. The raw numbers are in [%s](%s). ",
		res.Started.UTC().Format("2006-01-02 15:04 UTC"), (time.Duration(res.Duration) * time.Second).Round(time.Second),
		orDash(res.Machine.Commit), resultsPath, resultsPath)
	p("Each scenario below also gives the command that reruns it into this report.\n\n")
	if res.Quick {
		p("**This is a quick run** (`-quick`): a fifth of the clients and short windows. The targets are the full run's and are only indicative here.\n\n")
	}
	if res.Taskset {
		p("**Pinned** (`-taskset`): each server ran on CPU %s only (so its Go runtime used GOMAXPROCS=1), and the load workers, the feed and the orchestrating process on CPU %s. The floor's writer ran on CPU %s, its reader on CPU %s.\n\n", serverCPU, loadCPU, serverCPU, loadCPU)
	} else {
		p("**Not pinned**: the server under test, the load workers and the feed share the machine's %d cores, as in the issue's setting (proxy and load on the same machine). Each process's CPU is counted on its own, from /proc.\n\n", res.Machine.CPUs)
	}

	// Targets.
	p("## The issue's targets\n\n")
	servers := res.servers()
	p("| scenario | target |")
	for _, k := range servers {
		p(" %s | |", k)
	}
	p("\n|---|---|%s\n", strings.Repeat("---|---|", len(servers)))
	for _, name := range res.Order {
		sc, ok := scenarioByName(name)
		if !ok {
			continue
		}
		runs := res.Runs[name]
		for _, t := range sc.Targets {
			cells := []string{}
			for _, kind := range servers {
				r := find(runs, kind)
				switch {
				case r == nil:
					cells = append(cells, "not run", "")
				case r.Skipped != "":
					cells = append(cells, r.Skipped, "")
				case r.Err != "":
					cells = append(cells, "run failed: "+r.Err, "**FAIL**")
				default:
					v, ok := t.Check(r, res.floorFor(r))
					cells = append(cells, v, passWord(ok))
				}
			}
			p("| %s | %s | %s |\n", sc.Title, t.What, strings.Join(cells, " | "))
		}
	}
	p("\nThe targets apply to ws2sse; the other columns show how other designs fare against the same bar.\n\n")

	// Side by side.
	p("## Side by side\n\n")
	p("| scenario |")
	for _, m := range []string{"CPU per delivery", "p99", "RSS per client"} {
		for i, k := range servers {
			if i == 0 {
				p(" %s, %s |", m, k)
			} else {
				p(" %s |", k)
			}
		}
		if m == "CPU per delivery" {
			p(" ws2sse ÷ baseline |")
		}
	}
	p("\n|---|%s---|\n", strings.Repeat("---|", 3*len(servers)))
	for _, name := range res.Order {
		sc, _ := scenarioByName(name)
		w, bl := find(res.Runs[name], "ws2sse"), find(res.Runs[name], "baseline")
		cell := func(r *runResult, f func(*runResult) string) string {
			if !usable(r) {
				return "—"
			}
			return f(r)
		}
		cpu := func(r *runResult) string { return times(r, r.CPUPerDelivery) }
		p99 := func(r *runResult) string {
			if r.Latency.N == 0 {
				return "—"
			}
			return fmtMs(r.Latency.P99)
		}
		rss := func(r *runResult) string { return fmtBytes(r.RSSPerClient) }
		ratio := "—"
		if usable(w) && usable(bl) && w.CPUPerDelivery > 0 && bl.CPUPerDelivery > 0 {
			ratio = fmt.Sprintf("%.2f", w.CPUPerDelivery/bl.CPUPerDelivery)
		}
		p("| %s |", sc.Title)
		for i, f := range []func(*runResult) string{cpu, p99, rss} {
			for _, k := range servers {
				p(" %s |", cell(find(res.Runs[name], k), f))
			}
			if i == 0 {
				p(" %s |", ratio)
			}
		}
		p("\n")
	}
	p("\n![CPU per delivery and p99 latency against the number of clients, ws2sse and the baseline](%s)\n\n", chartLink)
	p("The chart plots the scenarios with one channel at 10 events/s against their number of clients.\n\n")

	// Machine.
	m := res.Machine
	p("## Machine\n\n")
	p("| | |\n|---|---|\n")
	p("| CPU | %s, %d CPUs (nproc) |\n", orDash(m.CPUModel), m.CPUs)
	p("| memory | %s |\n", fmtBytes(float64(m.MemTotal)))
	p("| kernel | Linux %s |\n", orDash(m.Kernel))
	p("| Go | %s (ws2sse and the baseline were built with it) |\n", m.Go)
	p("| open files per process | %d |\n", m.OpenMax)
	p("| net.core.somaxconn | %s |\n", orDash(m.Somaxconn))
	p("\n")

	// Floor.
	fr := res.Floor
	p("## The floor\n\n")
	runs := make([]string, len(fr.Runs))
	for i, r := range fr.Runs {
		runs[i] = fmt.Sprintf("%.2f", r)
	}
	p("One thread writing %d bytes round-robin to %s loopback TCP connections, whose peers drain them from one epoll loop in another process, spends **%.2f µs** of CPU per write(2) (getrusage(RUSAGE_THREAD) around %s writes; the median of %d runs: %s µs; %.2f µs of wall time per write). ",
		payloadSize, fmtInt(int64(fr.Conns)), fr.PerWrite, fmtInt(int64(fr.Writes)), len(fr.Runs), strings.Join(runs, ", "), fr.WallPerOp)
	p("A server that writes each event to each client with its own write(2) cannot spend less per delivery; every CPU-per-delivery figure here is also given as a multiple of it.\n\n")

	// Scenarios.
	p("## Scenarios\n\n")
	for _, name := range res.Order {
		sc, _ := scenarioByName(name)
		renderScenario(&b, sc, res, times)
	}

	renderMethod(&b, res)
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func renderScenario(b *strings.Builder, sc scenario, res *results, times func(*runResult, float64) string) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	runs := res.Runs[sc.Name]
	w, bl := find(runs, "ws2sse"), find(runs, "baseline")
	for _, r := range runs {
		if r.Channels > 0 { // as run: -quick scales it down
			sc.Channels, sc.PerChannel, sc.Rate = r.Channels, r.Clients/r.Channels, r.Rate
		}
	}
	p("### %s\n\n", sc.Title)
	rerun := fmt.Sprintf("go run ./bench -scenarios %s -merge bench/results.json", sc.Name)
	if res.Quick {
		rerun += " -quick"
	}
	if res.Taskset {
		rerun += " -taskset"
	}
	p("Scenario `%s`: %s clients", sc.Name, fmtInt(int64(sc.clients())))
	if sc.Channels > 1 {
		p(" (%s channels × %d)", fmtInt(int64(sc.Channels)), sc.PerChannel)
	}
	transport := "SSE"
	if sc.WS {
		transport = "WebSocket"
	}
	p(" over %s, ", transport)
	if sc.Rate == 0 {
		p("no events (heartbeats only). ")
	} else {
		p("%g events/s per channel of %d bytes. ", sc.Rate, payloadSize)
	}
	p("Rerun: `%s`.\n\n", rerun)
	byCmd := map[string][]string{}
	var cmds []string
	for _, k := range res.servers() {
		if r := find(runs, k); r != nil && r.Skipped == "" && r.Command != "" && r.Command != res.Command {
			key := fmt.Sprintf("`%s` (floor %.2f µs in that run)", r.Command, r.Floor)
			if byCmd[key] == nil {
				cmds = append(cmds, key)
			}
			byCmd[key] = append(byCmd[key], k)
		}
	}
	for _, key := range cmds {
		p("The %s numbers come from %s.\n\n", strings.Join(byCmd[key], " and "), key)
	}
	for _, k := range res.servers() {
		if r := find(runs, k); r != nil && r.Err != "" {
			p("The %s run failed: %s.\n\n", r.Server, r.Err)
		}
	}
	kinds := []*runResult{}
	head := "| |"
	sep := "|---|"
	for _, k := range res.servers() {
		if r := find(runs, k); usable(r) {
			kinds = append(kinds, r)
			head += " " + r.Server + " |"
			sep += "---|"
		}
	}
	if len(kinds) == 0 {
		return
	}
	both := usable(w) && usable(bl)
	if both {
		head += " ws2sse ÷ baseline |"
		sep += "---|"
	}
	p("%s\n%s\n", head, sep)
	row := func(label string, f func(*runResult) string, ratio func(*runResult) float64) {
		p("| %s |", label)
		for _, r := range kinds {
			p(" %s |", f(r))
		}
		if both {
			if ratio != nil && ratio(w) > 0 && ratio(bl) > 0 {
				p(" %.2f |", ratio(w)/ratio(bl))
			} else {
				p(" |")
			}
		}
		p("\n")
	}
	row("clients streaming / asked", func(r *runResult) string {
		return fmt.Sprintf("%s / %s", fmtInt(int64(r.Streaming)), fmtInt(int64(r.Clients)))
	}, nil)
	row("all connected after (ramp)", func(r *runResult) string { return fmt.Sprintf("%.1f s", r.RampSecs) }, nil)
	if sc.Rate > 0 {
		row("events published in the window", func(r *runResult) string {
			return fmt.Sprintf("%s in %.0f s (%.1f/s per channel)", fmtInt(r.Published), r.WindowSecs, float64(r.Published)/r.WindowSecs/float64(sc.Channels))
		}, nil)
		row("delivered / expected", func(r *runResult) string { return fmtRatio(r.Delivered, r.Expected) }, nil)
		row("lost / duplicated / reordered", func(r *runResult) string { return fmt.Sprintf("%d / %d / %d", r.Lost, r.Dup, r.Reorder) }, nil)
		row("latency p50 / p99 / p99.9 / max", func(r *runResult) string {
			l := r.Latency
			return fmt.Sprintf("%s / %s / %s / %s", fmtMs(l.P50), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max))
		}, func(r *runResult) float64 { return r.Latency.P99 })
		row("latency as read by the load, p50 / p99", func(r *runResult) string {
			return fmt.Sprintf("%s / %s", fmtMs(r.ReadLat.P50), fmtMs(r.ReadLat.P99))
		}, nil)
		row("CPU per delivery", func(r *runResult) string { return times(r, r.CPUPerDelivery) }, func(r *runResult) float64 { return r.CPUPerDelivery })
	}
	row("server CPU in the window", func(r *runResult) string {
		return fmt.Sprintf("%.2f s in %.0f s (%.0f%% of a core)", r.CPU, r.WindowSecs, 100*r.CPU/r.WindowSecs)
	}, func(r *runResult) float64 { return r.CPU })
	row("load workers' CPU", func(r *runResult) string {
		return fmt.Sprintf("%.0f%% of a core", 100*r.LoadCPU/r.WindowSecs)
	}, nil)
	row("feed and bench process's CPU", func(r *runResult) string {
		return fmt.Sprintf("%.0f%% of a core", 100*r.FeedCPU/r.WindowSecs)
	}, nil)
	row("rest of the machine's CPU (other processes, stray softirqs)", func(r *runResult) string {
		return fmt.Sprintf("%.0f%% of a core", 100*r.OtherCPU/r.WindowSecs)
	}, nil)
	row("RSS before clients → at the end", func(r *runResult) string {
		return fmt.Sprintf("%s → %s", fmtBytes(float64(r.RSSBefore)), fmtBytes(float64(r.RSSAfter)))
	}, nil)
	row("RSS per client", func(r *runResult) string { return fmtBytes(r.RSSPerClient) }, func(r *runResult) float64 { return r.RSSPerClient })
	row("heap in use per client", func(r *runResult) string {
		if r.Streaming == 0 {
			return "—"
		}
		return fmtBytes((r.After.HeapInuse - r.Before.HeapInuse) / float64(r.Streaming))
	}, func(r *runResult) float64 { return r.After.HeapInuse - r.Before.HeapInuse })
	row("events per write, over the run (ws2sse_writes_total)", func(r *runResult) string {
		writes := r.After.Writes - r.Before.Writes
		if writes <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", (r.After.EventsOut-r.Before.EventsOut)/writes)
	}, nil)
	row("goroutines", func(r *runResult) string {
		per := ""
		if r.Streaming > 0 {
			per = fmt.Sprintf(" (%.2f per client)", (r.After.Goroutines-r.Before.Goroutines)/float64(r.Streaming))
		}
		return fmtInt(int64(r.After.Goroutines)) + per
	}, func(r *runResult) float64 { return r.After.Goroutines })
	row("GC pause p50 / max (go_gc_duration_seconds)", func(r *runResult) string {
		return fmt.Sprintf("%s / %s", fmtMs(r.After.GCPause["0.5"]*1000), fmtMs(r.After.GCPause["1"]*1000))
	}, nil)
	row("gap / overload events, streams closed", func(r *runResult) string {
		return fmt.Sprintf("%d / %d / %d", r.Gaps, r.Overload, r.Closed)
	}, nil)
	row("heartbeats received", func(r *runResult) string { return fmtInt(r.Heartbeats) }, nil)
	row("connection errors", func(r *runResult) string { return fmtErrors(r.Errors) }, nil)
	row("runs (another is made while other processes take over a quarter of a core)", func(r *runResult) string {
		return fmt.Sprint(max(r.Attempts, 1))
	}, nil)
	if sc.Kind == "slow" {
		row("others' p99 before → while one is stopped", func(r *runResult) string {
			return fmt.Sprintf("%s → %s", fmtMs(r.Slow.P99Before), fmtMs(r.Slow.P99During))
		}, nil)
		row("stopped client dropped", func(r *runResult) string {
			if !r.Slow.Dropped {
				return fmt.Sprintf("no, within %.0f s", res.Timing["slowMax"])
			}
			s := fmt.Sprintf("after %.1f s", r.Slow.DropAfter)
			if r.Slow.ClientEnd != "" {
				s += "; the client saw: " + r.Slow.ClientEnd
			}
			return s
		}, nil)
		row("peak RSS with every client reading → while one is stopped → after the drop", func(r *runResult) string {
			return fmt.Sprintf("%s → %s → %s", fmtBytes(float64(r.Slow.RSSBeforeStop)), fmtBytes(float64(r.Slow.RSSMax)), fmtBytes(float64(r.Slow.RSSAfter)))
		}, nil)
		row("peak heap in use before the stop → while stopped", func(r *runResult) string {
			return fmt.Sprintf("%s → %s", fmtBytes(r.Slow.HeapBeforeStop), fmtBytes(r.Slow.HeapMax))
		}, nil)
	}
	if sc.Kind == "storm" {
		row("streams reopened / with their head / live again", func(r *runResult) string {
			return fmt.Sprintf("%s / %s / %s", fmtInt(int64(r.Storm.Conns)), fmtInt(int64(r.Storm.Reconnected)), fmtInt(int64(r.Storm.Live)))
		}, nil)
		row("reconnected, p50 / all", func(r *runResult) string {
			return fmt.Sprintf("%s / %s", fmtMs(r.Storm.ReconnectP50), fmtMs(r.Storm.ReconnectMax))
		}, func(r *runResult) float64 { return r.Storm.ReconnectMax })
		row("live again (an event sent after the storm began), p50 / p99 / all", func(r *runResult) string {
			return fmt.Sprintf("%s / %s / %s", fmtMs(r.Storm.LiveP50), fmtMs(r.Storm.LiveP99), fmtMs(r.Storm.LiveMax))
		}, func(r *runResult) float64 { return r.Storm.LiveMax })
	}
	if w != nil && w.Cluster != nil && usable(w) {
		renderCluster(row, w)
	}
	p("\n")
	if w != nil && w.Cluster != nil && usable(w) {
		c := w.Cluster
		p("%d ws2sse processes with the same configuration plus a `[cluster]` table (`redis` on a redis-server %s the bench started on a loopback port with `--save \"\" --appendonly no`, a distinct `node` each, `lease = \"%s\"`), one eager channel on the feed. ",
			len(c.Nodes), orDash(c.Redis), clusterLease)
		p("Each process got its share of the clients from its own load worker. Latency runs from the feed's write to the client's socket, so it includes the holder's XADD and every process's XREAD through Redis. ")
		p("The server rows above sum the %d processes; server CPU and CPU per delivery also include redis-server's (%.2f s in the window), and its RSS (%s at the end) is not in the RSS rows. ", len(c.Nodes), c.RedisCPU, fmtBytes(float64(c.RedisRSS)))
		p("The id check opens one more stream on every process at the same time after the window, reads them for %.0f s, and compares the id each process gave every event they all got. ", idCheck.Seconds())
		p("The baseline has no cluster mode, so it was not run.\n\n")
	}
	if sc.Kind == "slow" {
		p("The window rows are the other clients while the one is stopped; its worker was sent SIGSTOP, and its socket has a 4 KiB receive buffer and a 536-byte MSS, so that the kernel's buffers toward it fill in seconds, not minutes (with loopback's 64 KiB segments the server's send buffer grows to megabytes).\n\n")
	}
	if sc.Kind == "storm" {
		p("The window opens 3 s before every client closes its stream and reopens it at once with `Last-Event-ID` (the last id it saw), so that its delivered/expected and loss counts span the storm.\n\n")
	}
}

func fmtErrors(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %s", strings.ReplaceAll(k, "|", "/"), fmtInt(int64(m[k])))
	}
	return strings.Join(parts, "; ")
}

func renderMethod(b *strings.Builder, res *results) {
	t := res.Timing
	fmt.Fprintf(b, `## Method

### Running it

From the repository root, on Linux:

`+"```sh"+`
go run ./bench -scenarios all -out BENCHMARKS.md    # the full suite, about 20 minutes
go run ./bench -quick                               # a fifth of the clients, short windows: a few minutes (writes to $TMPDIR/ws2sse-bench-quick/)
go run ./bench -scenarios fanout-10k,storm-10k      # some scenarios
go run ./bench -taskset                             # the server on CPU 0, the load on CPU 1
go run ./bench -scenarios fanout-5k -merge bench/results.json   # run one again, replacing its runs in the results
go run ./bench -render bench/results.json           # only rewrite the report from saved results
`+"```"+`

Flags: `+"`-scenarios`"+` (names, comma-separated, or `+"`all`"+`: %s), `+"`-servers ws2sse,baseline`"+`,
`+"`-attempts`"+` (default 3), `+"`-merge`"+`, `+"`-render`"+`,
`+"`-out`"+` (the report), `+"`-chart`"+` (default `+"`bench/chart.svg`"+`), `+"`-results`"+` (default `+"`bench/results.json`"+`),
`+"`-floor-conns`"+` and `+"`-floor-writes`"+`. It needs `+"`go`"+` on the PATH (and `+"`redis-server`"+` for `+"`cluster-3x`"+`), the open-file limit high enough for 19,000
sockets per process, and (with `+"`-taskset`"+`) the taskset command.

### What runs

- **The feed**: a WebSocket server (github.com/coder/websocket) inside the bench process, serving one feed per channel
  at `+"`/feed/N`"+`. Each feed publishes at the scenario's rate, phases spread over one period; each event is a
  %d-byte JSON object `+"`{\"seq\":N,\"sent\":UNIX_NANOS,\"ch\":N,\"pad\":\"xx…\"}`"+`, stamped just before it is
  written, and every send time is kept so that what was published within a window can be counted.
- **ws2sse**, built from `+"`./cmd/ws2sse`"+` into a temporary directory and run as its own process with a generated
  configuration: one eager channel (`+"`lazy = false`"+`) per feed, `+"`event_field = \"\"`"+`, `+"`replay = 1000`"+`,
  `+"`replay_age = \"5m\"`"+`, `+"`downstream.queue = 1024`"+`, `+"`write_timeout = \"10s\"`"+`, `+"`heartbeat = \"15s\"`"+`,
  `+"`server.max_clients = 50000`"+`, `+"`dashboard = false`"+`, `+"`-listen 127.0.0.1:0`"+` (the address is read from its
  `+"`ws2sse listening`"+` log line). It logs at level info (one line per client session).
- **The baseline**, `+"`bench/baseline`"+`, built and run the same way: what a Go developer writes first — net/http,
  one goroutine per client, a buffered channel of 1,024 events per client (dropped when full), one `+"`Write`"+` and one
  `+"`Flush`"+` per event, a 10 s write deadline, `+"`id:`"+` counters and a 1,000-event ring for `+"`Last-Event-ID`"+`.
  It exports the same Go runtime metrics through client_golang.
- **Load workers**: this program run again with `+"`-worker`"+`, each holding at most %s connections and reading all
  of them from one epoll loop (golang.org/x/sys/unix, non-blocking sockets, one thread), so that the load leaves the
  server its CPU. Clients speak raw HTTP/1.1: they parse the response head, chunked transfer coding and the SSE
  fields (WHATWG rules), or WebSocket frames (answering pings). Each event's sequence number is checked against the
  connection's last one (a skip is loss, the same one again a duplicate, an older one a reorder; over the connection's
  whole life, across reconnections), and its latency goes into a log-linear histogram (32 sub-buckets per power of
  two: within 3%%). Latency is receive time − send time, both CLOCK_REALTIME on one machine, where the receive time is
  the kernel's timestamp of the data's arrival on the client's socket (SO_TIMESTAMPNS, read with recvmsg), so that a
  worker busy with its other sockets does not add its own delay; the latency at the moment the worker read the
  bytes is reported too. Workers report to the parent as JSON lines on stdout.

### Phases of a run

Each scenario runs against each server in turn, with a fresh feed and server process: connect the clients at
%.0f per second in all (spread over the workers) and wait until every one streams or failed; warm up %.0f s; then a
window of %.0f s; then %.0f s more for late events. The window counts the events *sent* within it: **delivered** is how
many reached a client that was streaming when the window opened, **expected** is, per channel, the events published
in the window times those clients. Server numbers are sampled at both ends of the window:

- **CPU per delivery**: utime + stime of the server process (/proc/PID/stat) over the window, divided by the events
  delivered in it. It is also given as a multiple of the floor.
- **RSS per client**: VmRSS (/proc/PID/status) at the end of the window minus VmRSS a second after the server was
  ready and before any client connected, divided by the streaming clients.
- **goroutines, heap in use, GC pauses**: `+"`go_goroutines`"+`, `+"`go_memstats_heap_inuse_bytes`"+` and the
  `+"`go_gc_duration_seconds`"+` quantiles from the server's `+"`/metrics`"+` at the end of the window.
- **load workers' CPU**: the same /proc figure for the workers, to show how much of the machine the load took.

The slow client: one more client, alone in its own worker, with a 4 KiB SO_RCVBUF and a 536-byte TCP_MAXSEG; after a first window its worker
gets SIGSTOP, a second window measures the others, and the server's client gauge is watched (every 0.5 s, up to
%.0f s) for the stopped client to go, along with the server's RSS and heap. Then SIGCONT, and the client reports how
its stream ended. The storm: a window of 3 + %.0f s; 3 s in, every worker closes all its streams and reopens them at
once (no ramp), with `+"`Last-Event-ID`"+` set to the last id it saw; each client records when its response head came
back and when it received the first event sent after the storm began (live again).

### Caveats

- The load, the feed and the server share one machine; without `+"`-taskset`"+` they share its cores too. The
  servers' CPU per delivery is their own process's; latency includes the scheduling delays of the whole machine.
- Latency is measured from the feed's write, so it includes the feed→server hop. An event written to 10,000 clients
  one after the other reaches the last one a whole fan-out later: p99 is about the time the server takes to write one
  event to every client.
- Other work on the machine disturbs the numbers: each run waits for a quiet second first, the report shows how much
  CPU the rest of the machine took during each window, and a run during which it took over a quarter of a core is
  made again (up to `+"`-attempts`"+`, keeping the quietest).
- CPU time from /proc has a 10 ms tick; over a %.0f s window that is well under 1%% of the figures here.
- RSS includes garbage not yet collected; the heap row shows the live part.
`, strings.Join(scenarioNames(), ", "), payloadSize, fmtInt(perWorker), t["rampRate"], t["warmup"], t["window"], t["drain"], t["slowMax"], t["storm"], t["window"])
}

// servers returns the servers a run measured, in order.
func (res *results) servers() []string {
	if len(res.Servers) > 0 {
		return res.Servers
	}
	return []string{"ws2sse", "baseline"}
}

// floorFor is the floor measured by the command that made r.
func (res *results) floorFor(r *runResult) float64 {
	if r != nil && r.Floor > 0 {
		return r.Floor
	}
	return res.Floor.PerWrite
}

// reruns lists the commands, other than the report's own, that made runs.
func (res *results) reruns() []string {
	var cmds []string
	for _, name := range res.Order {
		for _, r := range res.Runs[name] {
			if r.Command != "" && r.Command != res.Command && !slices.Contains(cmds, r.Command) {
				cmds = append(cmds, r.Command)
			}
		}
	}
	return cmds
}

// renderCluster adds the rows of a run of several processes.
func renderCluster(row func(string, func(*runResult) string, func(*runResult) float64), w *runResult) {
	c := w.Cluster
	each := func(f func(n nodeResult) string) string {
		parts := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			parts[i] = f(n)
		}
		return strings.Join(parts, " / ")
	}
	holder := "none said it held the lease"
	for _, n := range c.Nodes {
		if n.Holder {
			holder = n.Name
		}
	}
	names := each(func(n nodeResult) string { return n.Name })
	row("processes", func(*runResult) string {
		return fmt.Sprintf("%d ws2sse (%s) + redis-server %s; the upstream lease holder: %s", len(c.Nodes), names, orDash(c.Redis), holder)
	}, nil)
	row("upstream connections the feed accepted over the run / open at the end", func(*runResult) string {
		return fmt.Sprintf("%d / %d", c.UpstreamMade, c.UpstreamOpen)
	}, nil)
	row("clients per process, streaming when the window opened ("+names+")", func(*runResult) string {
		return each(func(n nodeResult) string { return fmtInt(int64(n.Clients)) })
	}, nil)
	row("delivered per process", func(*runResult) string {
		return each(func(n nodeResult) string { return fmtInt(n.Delivered) })
	}, nil)
	row("latency p50 / p99 per process", func(*runResult) string {
		return each(func(n nodeResult) string { return fmtMs(n.Latency.P50) + ", " + fmtMs(n.Latency.P99) })
	}, nil)
	row("CPU in the window per process, then redis-server", func(*runResult) string {
		return each(func(n nodeResult) string { return fmt.Sprintf("%.2f s", n.CPU) }) + fmt.Sprintf(", then %.2f s", c.RedisCPU)
	}, nil)
	row("CPU per delivery, the ws2sse processes only", func(r *runResult) string {
		if r.Delivered == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f µs", (r.CPU-c.RedisCPU)*1e6/float64(r.Delivered))
	}, nil)
	row("RSS before clients → at the end, per process", func(*runResult) string {
		return each(func(n nodeResult) string {
			return fmt.Sprintf("%s → %s", fmtBytes(float64(n.RSSBefore)), fmtBytes(float64(n.RSSAfter)))
		})
	}, nil)
	row("RSS per client per process", func(*runResult) string {
		return each(func(n nodeResult) string { return fmtBytes(n.RSSPerClient) })
	}, nil)
	row("redis-server RSS at the end", func(*runResult) string { return fmtBytes(float64(c.RedisRSS)) }, nil)
	row("same id on every process", func(*runResult) string {
		if c.IDsErr != "" {
			return "check failed: " + c.IDsErr
		}
		s := fmt.Sprintf("%d events compared, %d differ", c.IDsCompared, c.IDsDiffer)
		if c.IDExample != "" {
			s += " (" + c.IDExample + " everywhere)"
		}
		return s
	}, nil)
}
