//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ws2sse/ws2sse/internal/redisproc"
)

// clusterLease is the [cluster] lease of the processes under test.
const clusterLease = "5s"

// idCheck is how long the id comparison reads from every process.
const idCheck = 3 * time.Second

// clusterResult is what a run of several ws2sse processes sharing one
// redis-server found, beyond the usual counts (which sum the processes).
type clusterResult struct {
	Redis        string       `json:"redis"` // redis-server --version
	Nodes        []nodeResult `json:"nodes"`
	RedisCPU     float64      `json:"redisCpu"` // seconds in the window
	RedisRSS     int64        `json:"redisRss"` // at the end of the window
	UpstreamMade int          `json:"upstreamMade"`
	UpstreamOpen int          `json:"upstreamOpen"` // at the end of the window
	IDsCompared  int          `json:"idsCompared"`  // events every process's check stream got
	IDsDiffer    int          `json:"idsDiffer"`    // of those, events whose id was not the same everywhere
	IDsErr       string       `json:"idsErr,omitempty"`
	IDExample    string       `json:"idExample,omitempty"`
}

// nodeResult is one ws2sse process of a cluster run.
type nodeResult struct {
	Name         string  `json:"name"`
	Holder       bool    `json:"holder"` // it held the upstream lease at the end of the window
	Clients      int     `json:"clients"`
	Delivered    int64   `json:"delivered"`
	Latency      latency `json:"latency"`
	CPU          float64 `json:"cpu"` // seconds in the window
	RSSBefore    int64   `json:"rssBefore"`
	RSSAfter     int64   `json:"rssAfter"`
	RSSPerClient float64 `json:"rssPerClient"`
}

// startRedis starts a redis-server on a free loopback port, on the servers'
// CPU with -taskset, logging into the suite's folder, and waits until it
// answers PING. stop stops it.
func (s *suite) startRedis(name string) (rd *redisproc.Proc, stop func(), err error) {
	dir := filepath.Join(s.dir, name+"-redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(filepath.Join(s.dir, name+"-redis.log"))
	if err != nil {
		return nil, nil, err
	}
	rd, err = redisproc.Start(redisproc.Options{Dir: dir, Output: logf,
		Wrap: func(argv []string) []string { return s.taskset(serverCPU, argv...) }})
	if err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("%w; see %s", err, logf.Name())
	}
	return rd, func() { rd.Stop(); logf.Close() }, nil
}

func redisVersion() string {
	path, err := redisproc.Path()
	if err != nil {
		return ""
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return ""
	}
	// "Redis server v=7.0.15 sha=... malloc=jemalloc-5.3.0 bits=64 build=..."
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// startNode starts ws2sse process i of a cluster: the scenario's
// configuration plus a [cluster] table.
func (s *suite) startNode(sc scenario, f *feed, redisURL string, i int) (*server, error) {
	name := fmt.Sprintf("node-%d", i+1)
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("%s-ws2sse-%s.log", sc.Name, name)))
	if err != nil {
		return nil, err
	}
	table := fmt.Sprintf("\n[cluster]\nredis = %q\nnode = %q\nlease = %q\nprefix = %q\n", redisURL, name, clusterLease, "bench")
	cfg := strings.Replace(string(ws2sseConfig(sc, f)), "\n[[channel]]", table+"\n[[channel]]", 1)
	file := filepath.Join(s.dir, fmt.Sprintf("%s-%s.toml", sc.Name, name))
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	srv, err := s.launch("ws2sse", logf, []string{s.bins["ws2sse"], "-config", file, "-listen", "127.0.0.1:0", "-log-format", "json"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return srv, nil
}

// runCluster runs a scenario against sc.Nodes ws2sse processes sharing one
// redis-server and one feed, the clients spread evenly over them.
func (s *suite) runCluster(sc scenario, res runResult) runResult {
	fail := func(err error) runResult {
		res.Err = err.Error()
		s.logf("  ws2sse: %v", err)
		return res
	}
	cr := &clusterResult{Redis: redisVersion()}
	res.Cluster = cr
	f, err := startFeed(sc.Channels, sc.Rate)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	rd, stopRedis, err := s.startRedis(sc.Name)
	if err != nil {
		return fail(err)
	}
	defer stopRedis()
	var nodes []*server
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for i := range sc.Nodes {
		n, err := s.startNode(sc, f, rd.URL(), i)
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
		cr.Nodes = append(cr.Nodes, nodeResult{Name: fmt.Sprintf("node-%d", i+1)})
	}
	time.Sleep(time.Second)
	var before []metrics
	for i, n := range nodes {
		cr.Nodes[i].RSSBefore, _ = procRSS(n.pid)
		res.RSSBefore += cr.Nodes[i].RSSBefore
		before = append(before, n.metrics())
	}
	res.Before = sumMetrics(before)

	// The clients: each process gets its share, from its own workers.
	var ws []*workerProc
	var nodeOf []int // ws[j] connects to nodes[nodeOf[j]]
	defer func() {
		for _, wp := range ws {
			wp.stop()
		}
	}()
	for i, n := range nodes {
		sub := sc
		sub.PerChannel = sc.PerChannel / sc.Nodes
		if i < sc.PerChannel%sc.Nodes {
			sub.PerChannel++
		}
		for _, j := range jobs(sub, n.addr, sub.clients(), s.timing.RampRate/float64(sc.Nodes), len(ws)) {
			j.Deadline = s.deadline.UnixNano()
			wp, err := s.startWorker(j)
			if err != nil {
				return fail(err)
			}
			ws = append(ws, wp)
			nodeOf = append(nodeOf, i)
		}
	}
	start := time.Now()
	if err := waitRamp(ws, time.Duration(float64(sc.clients())/s.timing.RampRate*float64(time.Second))+60*time.Second); err != nil {
		return fail(err)
	}
	res.RampSecs = time.Since(start).Seconds()
	s.logf("  ws2sse: %d clients connected to %d processes in %.1f s", sc.clients(), sc.Nodes, res.RampSecs)
	time.Sleep(s.timing.Warmup)

	pids := make([]int, 0, len(nodes)+1)
	for _, n := range nodes {
		pids = append(pids, n.pid)
	}
	pids = append(pids, rd.PID())
	win, err := s.measurePids(pids, ws, s.timing.Window, nil)
	if err != nil {
		return fail(err)
	}
	var after []metrics
	for i, n := range nodes {
		cr.Nodes[i].RSSAfter, _ = procRSS(n.pid)
		res.RSSAfter += cr.Nodes[i].RSSAfter
		after = append(after, n.metrics())
		cr.Nodes[i].CPU = win.each[i].Seconds()
		cr.Nodes[i].Holder = holdsLease(n.addr)
	}
	res.After = sumMetrics(after)
	cr.RedisCPU = win.each[len(nodes)].Seconds()
	cr.RedisRSS, _ = procRSS(rd.PID())
	for ch := range f.chans {
		made, open := f.connections(ch)
		cr.UpstreamMade += made
		cr.UpstreamOpen += open
	}
	res.fill(win, f) // CPU: the processes' and redis-server's, summed
	hists := make([]Hist, len(nodes))
	for j, rep := range win.reports {
		nr := &cr.Nodes[nodeOf[j]]
		for _, n := range rep.WindowClients {
			nr.Clients += n
		}
		nr.Delivered += rep.Delivered
		hists[nodeOf[j]].Merge(rep.Latency.hist())
	}
	for i := range cr.Nodes {
		nr := &cr.Nodes[i]
		nr.Latency = summarise(&hists[i])
		if nr.Clients > 0 {
			nr.RSSPerClient = float64(nr.RSSAfter-nr.RSSBefore) / float64(nr.Clients)
		}
	}
	if res.Streaming > 0 {
		res.RSSPerClient = float64(res.RSSAfter-res.RSSBefore) / float64(res.Streaming)
	}

	// The same event must carry the same id on every process: one more
	// stream on each, read at the same time, compared by sequence number.
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	cr.IDsCompared, cr.IDsDiffer, cr.IDExample, err = compareIDs(addrs, "/feed/0", idCheck)
	if err != nil {
		cr.IDsErr = err.Error()
	}
	return res
}

// sumMetrics adds up the processes' metrics; GC pauses are the largest.
func sumMetrics(ms []metrics) metrics {
	out := metrics{GCPause: map[string]float64{}}
	for _, m := range ms {
		out.Goroutines += m.Goroutines
		out.HeapInuse += m.HeapInuse
		out.Clients += m.Clients
		out.Slow += m.Slow
		out.EventsOut += m.EventsOut
		out.Writes += m.Writes
		for q, v := range m.GCPause {
			out.GCPause[q] = max(out.GCPause[q], v)
		}
	}
	return out
}

// holdsLease reports whether a process says, in /channels, that it holds
// the upstream lease of a channel.
func holdsLease(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/channels", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Channels []struct {
			Holder bool `json:"holder"`
		} `json:"channels"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return false
	}
	for _, c := range body.Channels {
		if c.Holder {
			return true
		}
	}
	return false
}

// compareIDs opens one SSE stream on every process at once, reads for d,
// and compares the id each gave every event (known by its sequence number)
// that all of them got. The example is the first such event's.
func compareIDs(addrs []string, path string, d time.Duration) (compared, differ int, example string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	got := make([]map[int64]string, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = readIDs(ctx, "http://"+a+path)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, 0, "", err
	}
	first := int64(-1)
	for seq, id := range got[0] {
		in, same := true, id != ""
		for _, m := range got[1:] {
			other, ok := m[seq]
			if !ok {
				in = false
				break
			}
			same = same && other == id
		}
		if !in {
			continue
		}
		compared++
		if !same {
			differ++
		}
		if first < 0 || seq < first {
			first, example = seq, fmt.Sprintf("event %d has id %s", seq, id)
		}
	}
	return compared, differ, example, nil
}

// readIDs reads an SSE stream until ctx is done, returning each event's id
// by the sequence number in its data.
func readIDs(ctx context.Context, url string) (map[int64]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[int64]string{}
	var id, data string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			var p struct {
				Seq int64 `json:"seq"`
			}
			if data != "" && json.Unmarshal([]byte(data), &p) == nil && p.Seq > 0 {
				out[p.Seq] = id
			}
			id, data = "", ""
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimPrefix(strings.TrimPrefix(line, "id:"), " ")
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	return out, nil // the stream ends when ctx does
}

func oneUpstream() target {
	return target{What: "one upstream connection for all the processes", Check: func(r *runResult, _ float64) (string, bool) {
		c := r.Cluster
		if c == nil {
			return "n/a", false
		}
		return fmt.Sprintf("%d made over the run, %d open at the end", c.UpstreamMade, c.UpstreamOpen),
			c.UpstreamMade == r.Channels && c.UpstreamOpen == r.Channels
	}}
}

func sameIDs() target {
	return target{What: "the same id for an event on every process", Check: func(r *runResult, _ float64) (string, bool) {
		c := r.Cluster
		if c == nil {
			return "n/a", false
		}
		if c.IDsErr != "" {
			return "check failed: " + c.IDsErr, false
		}
		return fmt.Sprintf("%d events seen on all %d processes, %d with different ids", c.IDsCompared, len(c.Nodes), c.IDsDiffer),
			c.IDsCompared > 0 && c.IDsDiffer == 0
	}}
}
