package bridge

import (
	"maps"
	"slices"
	"strings"
	"sync"
)

// Hub is the set of open channels. Channels opened from a template form a
// group with a cap on how many may be open at once; they close when they go
// idle, freeing their slot.
//
// Lock order: Hub.mu before Channel.mu.
type Hub struct {
	mu       sync.Mutex
	channels map[string]*Channel // guarded by mu
	groups   map[string]int      // open channels per group; guarded by mu
	retired  map[string]Stats    // counters of closed grouped channels, per group; guarded by mu
	closed   bool                // guarded by mu
	wg       sync.WaitGroup      // idle channels being closed
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{channels: make(map[string]*Channel), groups: make(map[string]int), retired: make(map[string]Stats)}
}

// Open returns the open channel named opts.Name, or opens it with opts.
func (h *Hub) Open(opts Options) (*Channel, error) {
	return h.open(opts, "", 0)
}

// OpenInGroup is Open for a channel of a group that may have at most limit
// channels open; past it, ErrTooManyChannels. The channel is lazy and
// closes once it has lingered idle.
func (h *Hub) OpenInGroup(group string, limit int, opts Options) (*Channel, error) {
	return h.open(opts, group, limit)
}

func (h *Hub) open(opts Options, group string, limit int) (*Channel, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if c, ok := h.channels[opts.Name]; ok {
		return c, nil
	}
	if group != "" {
		if h.groups[group] >= limit {
			return nil, ErrTooManyChannels
		}
		h.groups[group]++
		opts.Lazy = true
		opts.Group = group
		opts.OnIdle = func(c *Channel) { h.closeIdle(c, group) }
	}
	c := New(opts)
	h.channels[opts.Name] = c
	return c, nil
}

// closeIdle closes a grouped channel that went idle, unless a subscriber
// came back in the meantime.
func (h *Hub) closeIdle(c *Channel, group string) {
	h.mu.Lock()
	if h.closed || h.channels[c.Name()] != c || !c.closeIfIdle() {
		h.mu.Unlock()
		return
	}
	// Idle and marked closed, the channel counts nothing more: its counters
	// move to the retired ones in the same step that removes it, so that a
	// reader of both never sees them missing or twice.
	st := c.Info().Stats
	st.Clients = [numTransports]int{}
	r := h.retired[group]
	r.Add(st)
	h.retired[group] = r
	delete(h.channels, c.Name())
	h.groups[group]--
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	c.Close()
}

// Snapshot returns the open channels, ordered by name, and the retired
// counters of every group, read together: a channel that closes is in one
// or the other, never both or neither.
func (h *Hub) Snapshot() ([]*Channel, map[string]Stats) {
	h.mu.Lock()
	out := make([]*Channel, 0, len(h.channels))
	for _, c := range h.channels {
		out = append(out, c)
	}
	retired := maps.Clone(h.retired)
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b *Channel) int { return strings.Compare(a.Name(), b.Name()) })
	return out, retired
}

// Get returns the open channel with that name, or nil.
func (h *Hub) Get(name string) *Channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.channels[name]
}

// Channels returns the open channels ordered by name.
func (h *Hub) Channels() []*Channel {
	h.mu.Lock()
	out := make([]*Channel, 0, len(h.channels))
	for _, c := range h.channels {
		out = append(out, c)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b *Channel) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Close closes every channel and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	chans := h.channels
	h.channels = map[string]*Channel{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range chans {
		wg.Go(c.Close)
	}
	wg.Wait()
	h.wg.Wait()
}
