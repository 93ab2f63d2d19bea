//go:build linux

// Command bench measures ws2sse against a plain Go SSE fan-out server and
// against the kernel's cost of one write, and writes BENCHMARKS.md.
//
//	go run ./bench -scenarios all -out BENCHMARKS.md
//
// It builds ./cmd/ws2sse and ./bench/baseline into a temporary directory,
// runs each as its own process behind a WebSocket feed that it serves
// itself, and drives clients from load worker processes (this program run
// again with -worker), each reading up to 5,000 sockets from one epoll
// loop. See BENCHMARKS.md, section Method, for what is measured and how.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	scenarios string
	out       string
	chart     string
	results   string
	render    string
	merge     string
	servers   string
	quick     bool
	taskset   bool
	attempts  int
}

func main() {
	var o options
	var worker, floorDrain bool
	var floorWrite string
	var floorConns, floorWrites int
	flag.StringVar(&o.scenarios, "scenarios", "all", "comma-separated scenario `names`, or all: "+strings.Join(scenarioNames(), ", "))
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "the report to write")
	flag.StringVar(&o.chart, "chart", "bench/chart.svg", "the chart to write (linked from the report)")
	flag.StringVar(&o.results, "results", "bench/results.json", "where to keep the raw results")
	flag.StringVar(&o.render, "render", "", "only render the report from this results `file`")
	flag.StringVar(&o.merge, "merge", "", "run the scenarios again and replace their runs in this results `file` (then -results and the report are rewritten from it)")
	flag.StringVar(&o.servers, "servers", "ws2sse,baseline", "the servers to measure")
	flag.BoolVar(&o.quick, "quick", false, "a fifth of the clients, short windows, no extra chart points: a few minutes")
	flag.BoolVar(&o.taskset, "taskset", false, "pin the server to CPU "+serverCPU+" and the load to CPU "+loadCPU+" with taskset")
	flag.IntVar(&o.attempts, "attempts", 3, "runs of a scenario at most while other processes take over a quarter of a core")
	flag.BoolVar(&worker, "worker", false, "run as a load worker (internal)")
	flag.BoolVar(&floorDrain, "floor-drain", false, "run as the floor's reader (internal)")
	flag.StringVar(&floorWrite, "floor-write", "", "run as the floor's writer to `addr` (internal)")
	flag.IntVar(&floorConns, "floor-conns", 2000, "connections of the floor measurement")
	flag.IntVar(&floorWrites, "floor-writes", 200000, "writes per run of the floor measurement")
	flag.Parse()
	if o.quick {
		// A quick run does not overwrite the full run's report unless told to.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		dir := filepath.Join(os.TempDir(), "ws2sse-bench-quick")
		for name, p := range map[string]*string{"out": &o.out, "chart": &o.chart, "results": &o.results} {
			if !set[name] {
				*p = filepath.Join(dir, filepath.Base(*p))
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	switch {
	case worker:
		workerMain()
	case floorDrain || floorWrite != "":
		floorMain(floorWrite, floorConns, floorWrites)
	}
	if err := run(o, floorConns, floorWrites); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.Name)
	}
	return names
}

// results is everything a run found; the report is rendered from it.
type results struct {
	Command  string                     `json:"command"`
	Started  time.Time                  `json:"started"`
	Duration float64                    `json:"duration"` // seconds
	Quick    bool                       `json:"quick"`
	Taskset  bool                       `json:"taskset"`
	Machine  machine                    `json:"machine"`
	Floor    floorResult                `json:"floor"`
	Servers  []string                   `json:"servers"`
	Runs     map[string][]runResult     `json:"runs"` // by scenario name
	Order    []string                   `json:"order"`
	Timing   map[string]float64         `json:"timing"`
	Extra    map[string]json.RawMessage `json:"extra,omitempty"`
}

func run(o options, floorConns, floorWrites int) error {
	if o.render != "" {
		b, err := os.ReadFile(o.render)
		if err != nil {
			return err
		}
		var res results
		if err := json.Unmarshal(b, &res); err != nil {
			return err
		}
		return writeReport(o, &res)
	}
	var picked []scenario
	for _, sc := range scenarios() {
		if o.scenarios == "all" && o.quick && sc.Curve && sc.Targets == nil {
			continue // the chart's extra points
		}
		if o.scenarios == "all" || slices.Contains(strings.Split(o.scenarios, ","), sc.Name) {
			if o.quick {
				sc = sc.quick()
			}
			picked = append(picked, sc)
		}
	}
	if len(picked) == 0 {
		return fmt.Errorf("no scenario named %q; have %s", o.scenarios, strings.Join(scenarioNames(), ", "))
	}
	servers := strings.Split(o.servers, ",")
	for _, k := range servers {
		if k != "ws2sse" && k != "baseline" {
			return fmt.Errorf("unknown server %q: want ws2sse or baseline", k)
		}
	}
	if o.taskset {
		if _, err := exec.LookPath("taskset"); err != nil {
			return fmt.Errorf("-taskset: %w", err)
		}
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ws2sse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &suite{opts: o, timing: fullTiming, dir: dir, root: root, self: self, bins: map[string]string{}}
	if o.quick {
		s.timing = quickTiming
	}
	s.deadline = time.Now().Add(2 * time.Hour)
	res := &results{
		Command: commandLine(), Started: time.Now(), Quick: o.quick, Taskset: o.taskset,
		Machine: describeMachine(root), Runs: map[string][]runResult{}, Servers: servers,
		Timing: map[string]float64{"rampRate": s.timing.RampRate, "warmup": s.timing.Warmup.Seconds(),
			"window": s.timing.Window.Seconds(), "drain": s.timing.Drain.Seconds(), "slowMax": s.timing.SlowMax.Seconds(),
			"storm": s.timing.Storm.Seconds()},
	}
	if o.taskset {
		// The feed and this process go with the load.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", loadCPU, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset: %v: %s", err, out)
		}
	}
	s.logf("building ws2sse and the baseline into %s", dir)
	for kind, pkg := range map[string]string{"ws2sse": "./cmd/ws2sse", "baseline": "./bench/baseline"} {
		bin := filepath.Join(dir, kind)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		s.bins[kind] = bin
	}
	s.logf("measuring the floor: %d loopback connections, 256-byte writes", floorConns)
	if res.Floor, err = s.measureFloor(floorConns, floorWrites); err != nil {
		return err
	}
	s.logf("floor: %.2f µs of CPU per write (runs %v)", res.Floor.PerWrite, res.Floor.Runs)
	for _, sc := range picked {
		res.Order = append(res.Order, sc.Name)
		for _, kind := range servers {
			var r runResult
			for attempt := 1; attempt <= max(o.attempts, 1); attempt++ {
				s.waitQuiet()
				s.logf("%s (%s): %s", sc.Name, sc.Title, kind)
				try := s.run(sc, kind)
				try.Attempts = attempt
				if attempt == 1 || try.Err == "" && (r.Err != "" || try.OtherCPU < r.OtherCPU) {
					r = try
				}
				if try.Err != "" || try.Skipped != "" || !noisy(&try) || attempt == o.attempts {
					break
				}
				s.logf("  %s: other processes took %.0f%% of a core during the window; running it again", kind, 100*try.OtherCPU/try.WindowSecs)
				time.Sleep(2 * time.Second)
			}
			res.Runs[sc.Name] = append(res.Runs[sc.Name], r)
			if r.Err == "" && r.Skipped == "" {
				s.logf("  %s: %s delivered, p99 %s, CPU/delivery %.2f µs, RSS/client %s, errors %v",
					kind, fmtRatio(r.Delivered, r.Expected), fmtMs(r.Latency.P99), r.CPUPerDelivery, fmtBytes(r.RSSPerClient), r.Errors)
			}
			// Let sockets in TIME_WAIT and the servers' exits settle.
			time.Sleep(2 * time.Second)
		}
	}
	res.Duration = time.Since(res.Started).Seconds()
	if o.merge != "" {
		if res, err = mergeInto(o.merge, res); err != nil {
			return err
		}
	}
	if o.results != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.results, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := writeReport(o, res); err != nil {
		return err
	}
	s.logf("wrote %s, %s and %s", o.out, o.chart, o.results)
	return nil
}

// measureFloor runs the floor's reader and writer processes.
func (s *suite) measureFloor(conns, writes int) (floorResult, error) {
	argv := s.taskset(loadCPU, s.self, "-floor-drain")
	drain := exec.Command(argv[0], argv[1:]...)
	drain.Stderr = os.Stderr
	in, err := drain.StdinPipe()
	if err != nil {
		return floorResult{}, err
	}
	out, err := drain.StdoutPipe()
	if err != nil {
		return floorResult{}, err
	}
	if err := drain.Start(); err != nil {
		return floorResult{}, err
	}
	defer func() { in.Close(); _ = drain.Wait() }()
	addr, err := readAddrLine(bufio.NewReader(out))
	if err != nil {
		return floorResult{}, err
	}
	argv = s.taskset(serverCPU, s.self, "-floor-write", addr, "-floor-conns", strconv.Itoa(conns), "-floor-writes", strconv.Itoa(writes))
	w := exec.Command(argv[0], argv[1:]...)
	w.Stderr = os.Stderr
	b, err := w.Output()
	if err != nil {
		return floorResult{}, fmt.Errorf("floor: %w", err)
	}
	var fr floorResult
	if err := json.Unmarshal(b, &fr); err != nil {
		return fr, fmt.Errorf("floor: %w", err)
	}
	return fr, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from inside the ws2sse module")
	}
	return filepath.Dir(mod), nil
}

// commandLine is how this run was started, as a user would type it.
func commandLine() string {
	args := []string{"go run ./bench"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// noisyShare is the share of a core that other processes may take during a
// window before the run counts as disturbed.
const noisyShare = 0.25

func noisy(r *runResult) bool { return r.WindowSecs > 0 && r.OtherCPU/r.WindowSecs > noisyShare }

// waitQuiet waits, up to a minute, for a second in which other processes
// use less than a fifth of a core.
func (s *suite) waitQuiet() {
	start := time.Now()
	for time.Since(start) < time.Minute {
		b0 := machineBusy()
		time.Sleep(time.Second)
		if (machineBusy() - b0).Seconds() < 0.2 {
			break
		}
	}
	if waited := time.Since(start); waited > 3*time.Second {
		s.logf("waited %.0f s for the machine to quieten", waited.Seconds())
	}
}

// mergeInto replaces, in the results saved at path, the runs that fresh
// made, marking each with the command that made it.
func mergeInto(path string, fresh *results) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var old results
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, name := range fresh.Order {
		if !slices.Contains(old.Order, name) {
			old.Order = append(old.Order, name)
		}
		for _, r := range fresh.Runs[name] {
			r.Command, r.Floor = fresh.Command, fresh.Floor.PerWrite
			runs := old.Runs[name]
			i := slices.IndexFunc(runs, func(o runResult) bool { return o.Server == r.Server })
			if i < 0 {
				runs = append(runs, r)
			} else {
				runs[i] = r
			}
			old.Runs[name] = runs
		}
	}
	return &old, nil
}
