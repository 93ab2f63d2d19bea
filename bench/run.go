//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cores given to the servers and to the load with -taskset.
const (
	serverCPU = "0"
	loadCPU   = "1"
)

// perWorker is how many connections one load worker holds at most.
const perWorker = 5000

// runResult is one server's numbers in one scenario.
type runResult struct {
	Server string `json:"server"`
	// Command made this run when it is not the report's own (a -merge);
	// Floor is then the floor that command measured, in µs.
	Command string  `json:"command,omitempty"`
	Floor   float64 `json:"floor,omitempty"`
	Skipped string  `json:"skipped,omitempty"` // why it was not run
	Err     string  `json:"err,omitempty"`     // what stopped the run

	Clients    int            `json:"clients"` // asked for
	Channels   int            `json:"channels"`
	Rate       float64        `json:"rate"` // events per second per channel
	Attempts   int            `json:"attempts"`
	Streaming  int            `json:"streaming"` // streaming when the window opened
	ConnFailed int            `json:"connFailed"`
	Closed     int            `json:"closed"`
	Errors     map[string]int `json:"errors"`
	RampSecs   float64        `json:"rampSecs"`

	WindowSecs float64 `json:"windowSecs"`
	Published  int64   `json:"published"` // per channel, summed over channels
	Expected   int64   `json:"expected"`
	Delivered  int64   `json:"delivered"`
	Lost       int64   `json:"lost"`
	Dup        int64   `json:"dup"`
	Reorder    int64   `json:"reorder"`
	Gaps       int64   `json:"gaps"`
	Overload   int64   `json:"overload"`
	Wrong      int64   `json:"wrong"` // events of another channel, or unreadable
	Heartbeats int64   `json:"heartbeats"`
	Latency    latency `json:"latency"`     // to the data's arrival on the client socket
	ReadLat    latency `json:"readLatency"` // to the load worker's read
	Stamped    float64 `json:"stamped"`     // share of reads with a kernel receive timestamp

	CPU            float64 `json:"cpu"`            // server CPU seconds in the window
	CPUPerDelivery float64 `json:"cpuPerDelivery"` // µs
	LoadCPU        float64 `json:"loadCpu"`        // workers' CPU seconds in the window
	FeedCPU        float64 `json:"feedCpu"`        // the bench process's: the feed and the orchestration
	OtherCPU       float64 `json:"otherCpu"`       // every other process's, and softirqs outside any
	RSSBefore      int64   `json:"rssBefore"`      // before any client
	RSSAfter       int64   `json:"rssAfter"`       // at the end of the window
	RSSPerClient   float64 `json:"rssPerClient"`
	Before         metrics `json:"metricsBefore"`
	After          metrics `json:"metricsAfter"`

	Slow    *slowResult    `json:"slow,omitempty"`
	Storm   *stormResult   `json:"storm,omitempty"`
	Cluster *clusterResult `json:"cluster,omitempty"`
}

// latency summarises a histogram, in milliseconds.
type latency struct {
	N    uint64  `json:"n"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func summarise(h *Hist) latency {
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	return latency{N: h.N, P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max), Mean: h.Mean() / 1e6}
}

type slowResult struct {
	P99Before      float64 `json:"p99Before"` // ms, the other clients
	P99During      float64 `json:"p99During"`
	Dropped        bool    `json:"dropped"`
	DropAfter      float64 `json:"dropAfter"` // seconds after SIGSTOP
	ClientSawClose bool    `json:"clientSawClose"`
	ClientEnd      string  `json:"clientEnd"`
	RSSBeforeStop  int64   `json:"rssBeforeStop"`
	RSSMax         int64   `json:"rssMax"`
	RSSAfter       int64   `json:"rssAfter"`
	HeapBeforeStop float64 `json:"heapBeforeStop"`
	HeapMax        float64 `json:"heapMax"`
	During         latency `json:"during"`
	DuringExpected int64   `json:"duringExpected"`
	DuringDeliv    int64   `json:"duringDelivered"`
}

type stormResult struct {
	Conns        int     `json:"conns"`
	Reconnected  int     `json:"reconnected"`
	Live         int     `json:"live"`
	ReconnectP50 float64 `json:"reconnectP50"` // ms after the storm started
	ReconnectMax float64 `json:"reconnectMax"`
	LiveP50      float64 `json:"liveP50"`
	LiveP99      float64 `json:"liveP99"`
	LiveMax      float64 `json:"liveMax"`
}

// suite runs scenarios against the servers.
type suite struct {
	opts     options
	timing   timing
	dir      string // scratch: binaries, configurations, logs
	root     string // the module
	self     string // this program
	bins     map[string]string
	deadline time.Time // every child process stops by itself by then
}

// server is a running ws2sse or baseline process.
type server struct {
	kind string
	cmd  *exec.Cmd
	pid  int
	addr string
	log  *os.File
	done chan struct{}
}

func (s *suite) taskset(cpu string, argv ...string) []string {
	if !s.opts.taskset {
		return argv
	}
	return append([]string{"taskset", "-c", cpu}, argv...)
}

// startServer starts kind ("ws2sse" or "baseline") reading f, and waits
// until it is ready.
func (s *suite) startServer(kind string, sc scenario, f *feed) (*server, error) {
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("%s-%s.log", sc.Name, kind)))
	if err != nil {
		return nil, err
	}
	var argv []string
	switch kind {
	case "ws2sse":
		cfg := filepath.Join(s.dir, sc.Name+".toml")
		if err := os.WriteFile(cfg, ws2sseConfig(sc, f), 0o644); err != nil {
			return nil, err
		}
		argv = []string{s.bins[kind], "-config", cfg, "-listen", "127.0.0.1:0", "-log-format", "json"}
	case "baseline":
		argv = []string{s.bins[kind], "-listen", "127.0.0.1:0", "-feed", strings.Replace(f.URL(0), "/feed/0", "/feed/%d", 1),
			"-feeds", fmt.Sprint(sc.Channels), "-queue", "1024", "-replay", "1000", "-write-timeout", "10s"}
	}
	return s.launch(kind, logf, argv)
}

// launch starts argv as a server of kind logging to logf, and waits until
// it says where it listens and its /readyz answers 200.
func (s *suite) launch(kind string, logf *os.File, argv []string) (*server, error) {
	argv = s.taskset(serverCPU, argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", kind, err)
	}
	srv := &server{kind: kind, cmd: cmd, pid: cmd.Process.Pid, log: logf, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		// Copy the log, picking the address out of the "listening" line.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			var l struct{ Message, Addr string }
			if json.Unmarshal(line, &l) == nil && strings.HasSuffix(l.Message, "listening") && l.Addr != "" {
				select {
				case addrc <- l.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(logf, stderr)
	}()
	go func() { _ = cmd.Wait(); close(srv.done) }()
	select {
	case srv.addr = <-addrc:
	case <-srv.done:
		return nil, fmt.Errorf("%s exited at start; see %s", kind, logf.Name())
	case <-time.After(15 * time.Second):
		srv.stop()
		return nil, fmt.Errorf("%s did not say where it listens; see %s", kind, logf.Name())
	}
	// Ready: every feed connected.
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get("http://" + srv.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv, nil
			}
		}
		if time.Now().After(deadline) {
			srv.stop()
			return nil, fmt.Errorf("%s not ready after 60 s", kind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ws2sseConfig is one eager channel per feed.
func ws2sseConfig(sc scenario, f *feed) []byte {
	var b strings.Builder
	b.WriteString(`# Generated by the benchmark.
[server]
listen = "127.0.0.1:0"
max_clients = 50000
dashboard = false
shutdown_grace = "5s"

[downstream]
heartbeat = "15s"
retry = "2s"
queue = 1024
write_timeout = "10s"

[upstream]
ping_interval = "15s"
pong_timeout = "5s"
read_timeout = "60s"
`)
	for i := range sc.Channels {
		fmt.Fprintf(&b, `
[[channel]]
name = "feed-%d"
path = "/feed/%d"
url = %q
lazy = false
event_field = ""
replay = 1000
replay_age = "5m"
`, i, i, f.URL(i))
	}
	return []byte(b.String())
}

func (srv *server) stop() {
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		_ = srv.cmd.Process.Kill()
		<-srv.done
	}
	srv.log.Close()
}

func (srv *server) metrics() metrics {
	m, err := scrape(context.Background(), "http://"+srv.addr+"/metrics")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s metrics: %v\n", srv.kind, err)
	}
	return m
}

// workerProc is a running load worker.
type workerProc struct {
	id      int
	conns   int
	cmd     *exec.Cmd
	in      io.WriteCloser
	enc     *json.Encoder
	mu      sync.Mutex
	status  workerStatus // guarded by mu
	reports chan *workerReport
	done    chan struct{}
}

func (s *suite) startWorker(j job) (*workerProc, error) {
	argv := s.taskset(loadCPU, s.self, "-worker")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := 0
	for _, g := range j.Groups {
		n += g.N
	}
	wp := &workerProc{id: j.Worker, conns: n, cmd: cmd, in: in, enc: json.NewEncoder(in),
		reports: make(chan *workerReport, 4), done: make(chan struct{})}
	go func() {
		defer close(wp.done)
		dec := json.NewDecoder(bufio.NewReader(out))
		for {
			var m workerMsg
			if err := dec.Decode(&m); err != nil {
				_ = cmd.Wait()
				return
			}
			switch {
			case m.Status != nil:
				wp.mu.Lock()
				wp.status = *m.Status
				wp.mu.Unlock()
			case m.Report != nil:
				wp.reports <- m.Report
			}
		}
	}()
	if err := wp.enc.Encode(j); err != nil {
		return nil, err
	}
	return wp, nil
}

func (wp *workerProc) send(c command) { _ = wp.enc.Encode(c) }

func (wp *workerProc) get() workerStatus {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return wp.status
}

// report asks for the worker's counts.
func (wp *workerProc) report() (*workerReport, error) {
	wp.send(command{Cmd: "report"})
	select {
	case r := <-wp.reports:
		return r, nil
	case <-wp.done:
		return nil, fmt.Errorf("worker %d exited", wp.id)
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("worker %d did not report", wp.id)
	}
}

func (wp *workerProc) stop() {
	wp.send(command{Cmd: "stop"})
	wp.in.Close()
	select {
	case <-wp.done:
	case <-time.After(10 * time.Second):
		_ = wp.cmd.Process.Kill()
		<-wp.done
	}
}

// jobs splits a scenario's clients into workers of at most perWorker,
// every channel's clients spread over all of them.
func jobs(sc scenario, addr string, clients int, rate float64, first int) []job {
	nw := (clients + perWorker - 1) / perWorker
	js := make([]job, nw)
	for i := range js {
		js[i] = job{Worker: first + i, Addr: addr, Rate: rate / float64(nw), Channels: sc.Channels}
	}
	left := clients
	for ch := 0; ch < sc.Channels && left > 0; ch++ {
		n := min(sc.PerChannel, left)
		left -= n
		for i := range js {
			k := n / nw
			if i < n%nw {
				k++
			}
			if k > 0 {
				js[i].Groups = append(js[i].Groups, group{Path: fmt.Sprintf("/feed/%d", ch), Channel: ch, N: k, WS: sc.WS})
			}
		}
	}
	return js
}

// window is what a measurement window found.
type window struct {
	from, to  int64
	cpu, load time.Duration
	each      []time.Duration // the server's CPU, per process measured
	self      time.Duration   // this process: the feed and the orchestration
	other     time.Duration   // the rest of the machine
	reports   []*workerReport
}

// measure runs a window of length d on ws (starting half a second from
// now), samples the server's CPU at both ends, waits for late events, and
// collects the workers' reports.
func (s *suite) measure(srv *server, ws []*workerProc, d time.Duration, during func(from, to time.Time)) (window, error) {
	return s.measurePids([]int{srv.pid}, ws, d, during)
}

// measurePids is measure with the server's CPU summed over pids; the
// window also keeps each one's.
func (s *suite) measurePids(pids []int, ws []*workerProc, d time.Duration, during func(from, to time.Time)) (window, error) {
	t0 := time.Now().Add(500 * time.Millisecond)
	t1 := t0.Add(d)
	win := window{from: t0.UnixNano(), to: t1.UnixNano()}
	for _, wp := range ws {
		wp.send(command{Cmd: "window", From: win.from, To: win.to})
	}
	time.Sleep(time.Until(t0))
	cpu0 := make([]time.Duration, len(pids))
	for i, pid := range pids {
		cpu0[i], _ = procCPU(pid)
	}
	load0 := loadCPUOf(ws)
	busy0 := machineBusy()
	self0, _ := procCPU(os.Getpid())
	if during != nil {
		during(t0, t1)
	}
	time.Sleep(time.Until(t1))
	win.each = make([]time.Duration, len(pids))
	for i, pid := range pids {
		c, _ := procCPU(pid)
		win.each[i] = c - cpu0[i]
		win.cpu += win.each[i]
	}
	load1 := loadCPUOf(ws)
	busy1 := machineBusy()
	self1, _ := procCPU(os.Getpid())
	win.load, win.self = load1-load0, self1-self0
	win.other = max(busy1-busy0-win.cpu-win.load-win.self, 0)
	time.Sleep(s.timing.Drain)
	for _, wp := range ws {
		r, err := wp.report()
		if err != nil {
			return win, err
		}
		win.reports = append(win.reports, r)
	}
	return win, nil
}

func loadCPUOf(ws []*workerProc) time.Duration {
	var t time.Duration
	for _, wp := range ws {
		c, _ := procCPU(wp.cmd.Process.Pid)
		t += c
	}
	return t
}

// waitRamp waits until every worker has opened its connections and each
// is streaming or failed.
func waitRamp(ws []*workerProc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, wp := range ws {
			st := wp.get()
			if st.Started < wp.conns || st.Streaming+st.Failed+st.Closed < wp.conns {
				all = false
			}
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("clients still connecting at the ramp's time limit")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fill adds a window's counts to r.
func (r *runResult) fill(win window, f *feed) {
	var h, rh Hist
	var stamped, events int64
	r.Errors = map[string]int{}
	r.Streaming, r.ConnFailed, r.Closed = 0, 0, 0
	r.Lost, r.Dup, r.Reorder, r.Gaps, r.Overload, r.Wrong, r.Heartbeats, r.Delivered, r.Expected = 0, 0, 0, 0, 0, 0, 0, 0, 0
	perChannel := map[int]int{}
	for _, rep := range win.reports {
		r.ConnFailed += rep.Failed
		r.Closed += rep.Closed
		r.Delivered += rep.Delivered
		r.Lost += rep.Lost
		r.Dup += rep.Dup
		r.Reorder += rep.Reorder
		r.Gaps += rep.Gaps
		r.Overload += rep.Overload
		r.Wrong += rep.WrongChannel + rep.BadPayload + rep.OtherEvents
		r.Heartbeats += rep.Heartbeats
		for k, v := range rep.Errors {
			r.Errors[k] += v
		}
		for ch, n := range rep.WindowClients {
			perChannel[ch] += n
			r.Streaming += n
		}
		h.Merge(rep.Latency.hist())
		rh.Merge(rep.ReadLatency.hist())
		stamped += rep.Stamped
		events += rep.Events
	}
	r.Published = 0
	for ch := range f.chans {
		p := f.published(ch, win.from, win.to)
		r.Published += p
		r.Expected += p * int64(perChannel[ch])
	}
	r.Latency = summarise(&h)
	r.ReadLat = summarise(&rh)
	if events > 0 {
		r.Stamped = min(float64(stamped)/float64(events), 1)
	}
	r.WindowSecs = float64(win.to-win.from) / 1e9
	r.CPU = win.cpu.Seconds()
	r.LoadCPU = win.load.Seconds()
	r.OtherCPU = win.other.Seconds()
	r.FeedCPU = win.self.Seconds()
	if r.Delivered > 0 {
		r.CPUPerDelivery = win.cpu.Seconds() * 1e6 / float64(r.Delivered)
	}
}

// run runs one scenario against one server.
func (s *suite) run(sc scenario, kind string) (res runResult) {
	res = runResult{Server: kind, Clients: sc.clients(), Channels: sc.Channels, Rate: sc.Rate}
	if kind != "ws2sse" && sc.NoBaseline {
		res.Skipped = "serves SSE only"
		if sc.Nodes > 0 {
			res.Skipped = "does not apply: it has no cluster mode"
		}
		return res
	}
	if sc.Nodes > 0 {
		return s.runCluster(sc, res)
	}
	fail := func(err error) runResult {
		res.Err = err.Error()
		s.logf("  %s: %v", kind, err)
		return res
	}
	f, err := startFeed(sc.Channels, sc.Rate)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	srv, err := s.startServer(kind, sc, f)
	if err != nil {
		return fail(err)
	}
	defer srv.stop()
	time.Sleep(time.Second)
	res.RSSBefore, _ = procRSS(srv.pid)
	res.Before = srv.metrics()

	clients := sc.clients()
	var slowW *workerProc
	var ws []*workerProc
	defer func() {
		for _, wp := range append(ws, slowW) {
			if wp != nil {
				_ = wp.cmd.Process.Signal(syscall.SIGCONT)
				wp.stop()
			}
		}
	}()
	if sc.Kind == "slow" {
		clients-- // one more, in its own worker, stopped later
	}
	for _, j := range jobs(sc, srv.addr, clients, s.timing.RampRate, 0) {
		j.Deadline = s.deadline.UnixNano()
		wp, err := s.startWorker(j)
		if err != nil {
			return fail(err)
		}
		ws = append(ws, wp)
	}
	if sc.Kind == "slow" {
		// A client with a small receive buffer and segment size, so that the
		// kernel's buffers toward it fill in seconds (on loopback, with its
		// 64 KiB segments, the server's send buffer would hold minutes of
		// events).
		j := job{Worker: len(ws), Addr: srv.addr, Rate: 0, Channels: sc.Channels, RcvBuf: 4096, MSS: 536,
			Groups: []group{{Path: "/feed/0", Channel: 0, N: 1}}, Deadline: s.deadline.UnixNano()}
		if slowW, err = s.startWorker(j); err != nil {
			return fail(err)
		}
	}
	start := time.Now()
	all := ws
	if slowW != nil {
		all = append(append([]*workerProc(nil), ws...), slowW)
	}
	rampLimit := time.Duration(float64(clients)/s.timing.RampRate*float64(time.Second)) + 60*time.Second
	if err := waitRamp(all, rampLimit); err != nil {
		return fail(err)
	}
	res.RampSecs = time.Since(start).Seconds()
	s.logf("  %s: %d clients connected in %.1f s", kind, sc.clients(), res.RampSecs)
	time.Sleep(s.timing.Warmup)

	switch sc.Kind {
	case "steady":
		win, err := s.measure(srv, all, s.timing.Window, nil)
		if err != nil {
			return fail(err)
		}
		res.RSSAfter, _ = procRSS(srv.pid)
		res.After = srv.metrics()
		res.fill(win, f)
	case "slow":
		if err := s.runSlow(&res, srv, f, ws, slowW); err != nil {
			return fail(err)
		}
	case "storm":
		if err := s.runStorm(&res, srv, f, ws); err != nil {
			return fail(err)
		}
	}
	if res.Streaming > 0 {
		res.RSSPerClient = float64(res.RSSAfter-res.RSSBefore) / float64(res.Streaming)
	}
	return res
}

// runSlow measures the clients before and while one of them is stopped
// (SIGSTOP on its worker), until the server drops it.
func (s *suite) runSlow(res *runResult, srv *server, f *feed, ws []*workerProc, slowW *workerProc) error {
	sr := &slowResult{}
	res.Slow = sr
	// Before: the peak of memory over a window with every client reading.
	peak := func(until time.Time) {
		for time.Now().Before(until) {
			if rss, err := procRSS(srv.pid); err == nil {
				sr.RSSBeforeStop = max(sr.RSSBeforeStop, rss)
			}
			sr.HeapBeforeStop = max(sr.HeapBeforeStop, srv.metrics().HeapInuse)
			time.Sleep(500 * time.Millisecond)
		}
	}
	before, err := s.measure(srv, ws, s.timing.Window, func(_, to time.Time) { peak(to) })
	if err != nil {
		return err
	}
	var b runResult
	b.fill(before, f)
	sr.P99Before = b.Latency.P99

	clientsBefore := 0.0
	for range 10 {
		if m, err := scrape(context.Background(), "http://"+srv.addr+"/metrics"); err == nil && m.Clients > 0 {
			clientsBefore = m.Clients
			break
		}
	}
	if clientsBefore == 0 {
		return errors.New("could not read the server's client count")
	}
	if err := slowW.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("failed to stop the slow client: %w", err)
	}
	stopped := time.Now()
	s.logf("  %s: one client stopped; waiting for the server to drop it", srv.kind)
	// While stopped: one window for the others, and a watch on the
	// server's client count and memory.
	watch := func(until time.Time) {
		for time.Now().Before(until) {
			if rss, err := procRSS(srv.pid); err == nil {
				sr.RSSMax = max(sr.RSSMax, rss)
			}
			m, err := scrape(context.Background(), "http://"+srv.addr+"/metrics")
			if err != nil { // a busy server may not answer in time
				continue
			}
			sr.HeapMax = max(sr.HeapMax, m.HeapInuse)
			if !sr.Dropped && m.Clients < clientsBefore {
				sr.Dropped = true
				sr.DropAfter = time.Since(stopped).Seconds()
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	winDur := s.timing.Window
	during, err := s.measure(srv, ws, winDur, func(_, to time.Time) { watch(to) })
	if err != nil {
		return err
	}
	for deadline := stopped.Add(s.timing.SlowMax); !sr.Dropped && time.Now().Before(deadline); {
		watch(time.Now().Add(time.Second))
	}
	watch(time.Now().Add(time.Second)) // memory just after the drop
	res.fill(during, f)
	res.RSSAfter, _ = procRSS(srv.pid)
	res.After = srv.metrics()
	sr.RSSAfter = res.RSSAfter
	sr.P99During = res.Latency.P99
	sr.During = res.Latency
	sr.DuringExpected, sr.DuringDeliv = res.Expected, res.Delivered

	// Let the client run again: it reads what its socket holds, then
	// should find its stream ended.
	_ = slowW.cmd.Process.Signal(syscall.SIGCONT)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if st := slowW.get(); st.Closed > 0 || st.Failed > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r, err := slowW.report(); err == nil {
		sr.ClientSawClose = r.Closed > 0
		for k := range r.Errors {
			sr.ClientEnd = k
		}
	}
	return nil
}

// runStorm makes every client reconnect at once, with the last id it saw,
// inside a window that starts a few seconds before.
func (s *suite) runStorm(res *runResult, srv *server, f *feed, ws []*workerProc) error {
	st := &stormResult{}
	res.Storm = st
	lead := 3 * time.Second
	win, err := s.measure(srv, ws, lead+s.timing.Storm, func(from, _ time.Time) {
		at := from.Add(lead)
		time.Sleep(time.Until(at))
		for _, wp := range ws {
			wp.send(command{Cmd: "reconnect", At: at.UnixNano()})
		}
		s.logf("  %s: every client reconnecting", srv.kind)
	})
	if err != nil {
		return err
	}
	res.RSSAfter, _ = procRSS(srv.pid)
	res.After = srv.metrics()
	res.fill(win, f)
	var rh, lh Hist
	for _, r := range win.reports {
		st.Conns += r.StormConns
		st.Live += r.StormLive
		rh.Merge(r.Reconnect.hist())
		lh.Merge(r.Live.hist())
	}
	st.Reconnected = int(rh.N)
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	st.ReconnectP50, st.ReconnectMax = ms(rh.Quantile(0.5)), ms(rh.Max)
	st.LiveP50, st.LiveP99, st.LiveMax = ms(lh.Quantile(0.5)), ms(lh.Quantile(0.99)), ms(lh.Max)
	return nil
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
