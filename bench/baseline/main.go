// Command baseline is a plain Go SSE fan-out server, the yardstick the
// benchmarks measure ws2sse against: net/http, one goroutine per client,
// one write and one flush per event, no batching.
//
// It reads N WebSocket feeds (-feed URL with %d for the feed number) and
// serves feed i at /feed/i. Each event gets an id, a counter per feed; the
// last -replay events are kept, so that a client resuming with
// Last-Event-ID gets the ones it missed. A client whose queue of -queue
// events is full, or whose write takes over -write-timeout, is dropped.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	queue := flag.Int("queue", 1024, "events queued per client")
	replay := flag.Int("replay", 1000, "events kept per feed for resume")
	writeTimeout := flag.Duration("write-timeout", 10*time.Second, "bound of one write to one client")
	flag.Parse()
	if *feedURL == "" || *feeds < 1 {
		fmt.Fprintln(os.Stderr, "baseline: -feed URL and -feeds N (>= 1) are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *feedURL, *feeds, *queue, *replay, *writeTimeout); err != nil {
		logLine("error", err.Error(), "")
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, feedURL string, feeds, queue, replay int, writeTimeout time.Duration) error {
	var (
		clients   atomic.Int64
		eventsOut atomic.Uint64
		slow      atomic.Uint64
	)
	hubs := make([]*hub, feeds)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range hubs {
		hubs[i] = &hub{clients: map[*client]struct{}{}, replay: replay, queue: queue, slow: &slow}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hubs[i].readFeed(ctx, fmt.Sprintf(feedURL, i))
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fanout_clients", Help: "Connected clients."},
			func() float64 { return float64(clients.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_events_out_total", Help: "Events written to clients."},
			func() float64 { return float64(eventsOut.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fanout_slow_client_disconnects_total", Help: "Clients dropped for a full queue."},
			func() float64 { return float64(slow.Load()) }))

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
		clients.Add(1)
		defer clients.Add(-1)
		hubs[n].serve(w, r, writeTimeout, &eventsOut)
	})

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logLine("info", "baseline listening", ln.Addr().String())
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

// hub is one feed and its clients.
type hub struct {
	replay, queue int
	slow          *atomic.Uint64
	up            atomic.Bool

	mu      sync.Mutex
	clients map[*client]struct{} // guarded by mu
	ring    []event              // the last replay events; guarded by mu
	nextID  uint64               // guarded by mu
}

type event struct {
	id  uint64
	sse []byte
}

type client struct {
	ch      chan []byte
	dropped chan struct{} // closed when the hub drops the client
}

// readFeed reads the feed, reconnecting after a second when it fails,
// until ctx is done.
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
}

func (h *hub) publish(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	var b bytes.Buffer
	fmt.Fprintf(&b, "id: %d\n", h.nextID)
	for line := range strings.Lines(string(data)) {
		fmt.Fprintf(&b, "data: %s\n", strings.TrimRight(line, "\r\n"))
	}
	b.WriteByte('\n')
	e := event{h.nextID, b.Bytes()}
	if len(h.ring) == h.replay {
		copy(h.ring, h.ring[1:])
		h.ring = h.ring[:len(h.ring)-1]
	}
	h.ring = append(h.ring, e)
	for c := range h.clients {
		select {
		case c.ch <- e.sse:
		default:
			h.dropLocked(c)
		}
	}
}

func (h *hub) dropLocked(c *client) {
	delete(h.clients, c)
	close(c.dropped)
	h.slow.Add(1)
}

// subscribe adds a client; with a known lastID, it first gets the events
// after it.
func (h *hub) subscribe(lastID string) *client {
	c := &client{ch: make(chan []byte, h.queue), dropped: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, err := strconv.ParseUint(lastID, 10, 64); err == nil {
		for _, e := range h.ring {
			if e.id > id && len(c.ch) < cap(c.ch) {
				c.ch <- e.sse
			}
		}
	}
	h.clients[c] = struct{}{}
	return c
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		delete(h.clients, c)
		close(c.dropped)
	}
}

func (h *hub) serve(w http.ResponseWriter, r *http.Request, writeTimeout time.Duration, eventsOut *atomic.Uint64) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	c := h.subscribe(r.Header.Get("Last-Event-ID"))
	defer h.unsubscribe(c)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.dropped:
			return
		case b := <-c.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				if errors.Is(err, http.ErrNotSupported) {
					continue
				}
				return
			}
			eventsOut.Add(1)
		}
	}
}
