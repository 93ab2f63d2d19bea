// Command direct is a prototype SSE fan-out server that the benchmarks
// measure beside ws2sse and the baseline, to show what a different design
// costs: no goroutine and no net/http buffers per client. A request is
// hijacked at once and answered with a raw response head; from then on the
// client is a socket in a list. Each feed's events are encoded once and
// written to every client by a few writer goroutines (one per CPU), each
// doing one non-blocking write(2) per client, as the floor does. A client
// whose socket is full keeps the rest in a bounded backlog and is dropped
// when that overflows.
//
// It is a measuring device, not a server to deploy: it detects a client
// that left only when a write fails, and its resume is a plain ring.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen `address`")
	feedURL := flag.String("feed", "", "feed `URL`, with %d for the feed number")
	feeds := flag.Int("feeds", 1, "number of feeds")
	queue := flag.Int("queue", 1024, "events a client may fall behind before it is dropped")
	replay := flag.Int("replay", 1000, "events kept per feed for resume")
	flag.Parse()
	if *feedURL == "" || *feeds < 1 {
		fmt.Fprintln(os.Stderr, "direct: -feed URL and -feeds N (>= 1) are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *feedURL, *feeds, *queue, *replay); err != nil {
		logLine("error", err.Error(), "")
		os.Exit(1)
	}
}

// stats are counted for /metrics.
type stats struct {
	clients   atomic.Int64
	eventsOut atomic.Uint64
	slow      atomic.Uint64
}

func run(ctx context.Context, listen, feedURL string, feeds, queue, replay int) error {
	st := &stats{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	hubs := make([]*hub, feeds)
	for i := range hubs {
		hubs[i] = newHub(replay, queue, st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hubs[i].readFeed(ctx, fmt.Sprintf(feedURL, i))
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			hubs[i].heartbeats(ctx, 15*time.Second)
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_clients", Help: "Connected clients."},
			func() float64 { return float64(st.clients.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_events_out_total", Help: "Events written to clients."},
			func() float64 { return float64(st.eventsOut.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_slow_client_disconnects_total", Help: "Clients dropped for a full backlog."},
			func() float64 { return float64(st.slow.Load()) }))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		for i, h := range hubs {
			if !h.up.Load() {
				http.Error(w, fmt.Sprintf("feed %d is not connected", i), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /feed/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n >= len(hubs) {
			http.NotFound(w, r)
			return
		}
		hubs[n].serve(w, r)
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logLine("info", "direct listening", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	cancel()
	for _, h := range hubs {
		h.closeAll()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func logLine(level, msg, addr string) {
	b, _ := json.Marshal(struct {
		Level   string `json:"level"`
		Addr    string `json:"addr,omitempty"`
		Message string `json:"message"`
	}{level, addr, msg})
	fmt.Fprintln(os.Stderr, string(b))
}

// client is one hijacked connection.
type client struct {
	conn    net.Conn
	raw     syscall.RawConn
	backlog []byte // bytes its socket did not take yet; owned by its shard
	last    uint64 // id of the last event it was given; owned by its shard
	dead    bool   // owned by its shard
}

// write writes b, or appends it to the backlog when the socket is full. It
// reports false when the client must go: a failed write, or a backlog over
// max bytes.
func (c *client) write(b []byte, max int) bool {
	if len(c.backlog) > 0 {
		if !c.flush() {
			return false
		}
		if len(c.backlog) > 0 {
			c.backlog = append(c.backlog, b...)
			return len(c.backlog) <= max
		}
	}
	n, err := c.rawWrite(b)
	if err != nil {
		return false
	}
	if n < len(b) {
		c.backlog = append(c.backlog, b[n:]...)
	}
	return true
}

func (c *client) flush() bool {
	n, err := c.rawWrite(c.backlog)
	if err != nil {
		return false
	}
	c.backlog = append(c.backlog[:0], c.backlog[n:]...)
	if len(c.backlog) == 0 {
		c.backlog = nil
	}
	return true
}

// rawWrite is one non-blocking write(2); a full socket writes 0 bytes.
func (c *client) rawWrite(b []byte) (int, error) {
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true // never wait for the socket: the backlog does
	})
	if err == nil {
		err = werr
	}
	if errors.Is(err, syscall.EAGAIN) {
		return 0, nil
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

// shard is the clients one writer goroutine serves.
type shard struct {
	events  chan event
	mu      sync.Mutex
	clients []*client // guarded by mu
}

// hub is one feed and its clients.
type hub struct {
	replay, queue int
	st            *stats
	up            atomic.Bool
	shards        []*shard
	next          atomic.Uint64 // picks a shard for a new client

	mu     sync.Mutex // orders publication against subscription
	ring   []event    // guarded by mu
	nextID uint64     // guarded by mu
}

// event is an event's wire bytes; id 0 marks a heartbeat.
type event struct {
	id  uint64
	sse []byte
}

func newHub(replay, queue int, st *stats) *hub {
	h := &hub{replay: replay, queue: queue, st: st}
	for range runtime.GOMAXPROCS(0) {
		sh := &shard{events: make(chan event, 4096)}
		h.shards = append(h.shards, sh)
		go h.writeLoop(sh)
	}
	return h
}

// writeLoop writes each event to every client of sh, one write each.
func (h *hub) writeLoop(sh *shard) {
	maxBacklog := h.queue * 512
	for e := range sh.events {
		sh.mu.Lock()
		kept := sh.clients[:0]
		for _, c := range sh.clients {
			if e.id != 0 && e.id <= c.last { // it had this one at subscription
				kept = append(kept, c)
				continue
			}
			if e.id != 0 {
				c.last = e.id
			}
			if c.write(e.sse, maxBacklog) {
				kept = append(kept, c)
				h.st.eventsOut.Add(1)
				continue
			}
			c.conn.Close()
			h.st.clients.Add(-1)
			if len(c.backlog) > maxBacklog {
				h.st.slow.Add(1)
			}
		}
		clear(sh.clients[len(kept):])
		sh.clients = kept
		sh.mu.Unlock()
	}
}

func (h *hub) readFeed(ctx context.Context, url string) {
	for ctx.Err() == nil {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err == nil {
			h.up.Store(true)
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					break
				}
				h.publish(data)
			}
			h.up.Store(false)
			c.CloseNow()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	for _, sh := range h.shards {
		close(sh.events)
	}
}

func (h *hub) publish(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	b := fmt.Appendf(nil, "id: %d\n", h.nextID)
	for line := range strings.Lines(string(data)) {
		b = fmt.Appendf(b, "data: %s\n", strings.TrimRight(line, "\r\n"))
	}
	b = append(b, '\n')
	if len(h.ring) == h.replay {
		copy(h.ring, h.ring[1:])
		h.ring = h.ring[:len(h.ring)-1]
	}
	e := event{h.nextID, b}
	h.ring = append(h.ring, e)
	for _, sh := range h.shards {
		sh.events <- e
	}
}

// heartbeats writes a comment to every client each period, so that one
// that left is found.
func (h *hub) heartbeats(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, sh := range h.shards {
				select {
				case sh.events <- event{sse: []byte(": heartbeat\n\n")}:
				default:
				}
			}
		}
	}
}

const responseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n" +
	"X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n"

// serve hijacks the request's connection, sends the head and what the
// client missed, and hands the socket to a shard. The handler goroutine
// then ends.
func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	lastID := r.Header.Get("Last-Event-ID")
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	_ = brw // the request had no body; the buffers are dropped with it
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		conn.Close()
		return
	}
	c := &client{conn: conn, raw: raw}
	head := []byte(responseHead)
	sh := h.shards[h.next.Add(1)%uint64(len(h.shards))]
	// Under the hub's lock no event is published: the backlog and the
	// registration are one step.
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, err := strconv.ParseUint(lastID, 10, 64); err == nil {
		for _, e := range h.ring {
			if e.id > id {
				head = append(head, e.sse...)
			}
		}
	}
	c.last = h.nextID
	if !c.write(head, h.queue*512) {
		conn.Close()
		return
	}
	sh.mu.Lock()
	sh.clients = append(sh.clients, c)
	sh.mu.Unlock()
	h.st.clients.Add(1)
}

func (h *hub) closeAll() {
	for _, sh := range h.shards {
		sh.mu.Lock()
		for _, c := range sh.clients {
			c.conn.Close()
		}
		sh.clients = nil
		sh.mu.Unlock()
	}
}
