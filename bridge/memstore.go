package bridge

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryStore is a Store held in memory. The nodes sharing it are the
// stores made with Join, in the same process: it lets several channels of
// one program, or of one test, behave as the processes of a cluster. It
// ignores LogOptions.TTL.
type MemoryStore struct {
	node string
	mem  *memory
	err  atomic.Pointer[error] // set by Fail: every call of this node fails
}

// memory is what the nodes of a MemoryStore share.
type memory struct {
	mu   sync.Mutex
	logs map[string]*memLog // by channel name; guarded by mu
}

// NewMemoryStore returns an empty store used by the node named node.
func NewMemoryStore(node string) *MemoryStore {
	return &MemoryStore{node: node, mem: &memory{logs: make(map[string]*memLog)}}
}

// Join returns the same store as used by another node.
func (m *MemoryStore) Join(node string) *MemoryStore {
	return &MemoryStore{node: node, mem: m.mem}
}

// Fail makes every call of this node fail with err, as if the store had
// become unreachable from it; Fail(nil) reconnects it.
func (m *MemoryStore) Fail(err error) {
	if err == nil {
		m.err.Store(nil)
		return
	}
	m.err.Store(&err)
}

func (m *MemoryStore) failure() error {
	if p := m.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Node returns the node's name.
func (m *MemoryStore) Node() string { return m.node }

// Log returns the shared log of a channel.
func (m *MemoryStore) Log(channel string, o LogOptions) Log {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	l, ok := m.mem.logs[channel]
	if !ok {
		l = &memLog{presence: make(map[string]time.Time), changed: make(chan struct{})}
		m.mem.logs[channel] = l
	}
	l.mu.Lock()
	l.maxLen = max(o.MaxLen, 1)
	l.mu.Unlock()
	return &memNodeLog{m: m, l: l}
}

// memLog is one channel's log in a MemoryStore.
type memLog struct {
	mu         sync.Mutex // guards everything below
	maxLen     int
	recs       []Record
	last       eventKey // newest id assigned
	lease      string
	leaseUntil time.Time
	appended   string // lease and batch of the last append
	state      []byte
	presence   map[string]time.Time // node: until when it has subscribers
	changed    chan struct{}        // closed and replaced by every append
}

// memNodeLog is a memLog as one node sees it.
type memNodeLog struct {
	m *MemoryStore
	l *memLog
}

// holderLocked reports whether lease holds the lease now.
func (l *memLog) holderLocked(lease string, now time.Time) bool {
	return l.lease == lease && now.Before(l.leaseUntil)
}

func (n *memNodeLog) Append(_ context.Context, lease string, batch uint64, recs []Record) (bool, error) {
	if err := n.m.failure(); err != nil {
		return false, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.holderLocked(lease, time.Now()) {
		return false, nil
	}
	tag := lease + "#" + strconv.FormatUint(batch, 10)
	if l.appended == tag {
		return true, nil
	}
	l.appended = tag
	for _, r := range recs {
		r.Prev = ""
		if len(l.recs) > 0 {
			r.Prev = l.recs[len(l.recs)-1].ID
		}
		l.last = nextKey(l.last, time.Now())
		r.ID = l.last.String()
		r.Data = slices.Clone(r.Data)
		l.recs = append(l.recs, r)
		if r.State {
			l.state = r.Data
		}
	}
	if drop := len(l.recs) - l.maxLen; drop > 0 {
		l.recs = slices.Delete(l.recs, 0, drop)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return true, nil
}

func (n *memNodeLog) Read(ctx context.Context, after string, max int) ([]Record, error) {
	k, ok := parseKey(after)
	if !ok {
		k = eventKey{}
	}
	for {
		if err := n.m.failure(); err != nil {
			return nil, err
		}
		l := n.l
		l.mu.Lock()
		i, _ := slices.BinarySearchFunc(l.recs, k, func(r Record, k eventKey) int {
			rk, _ := parseKey(r.ID)
			if !k.less(rk) { // rk <= k
				return -1
			}
			return 1
		})
		out := slices.Clone(l.recs[i:min(len(l.recs), i+max)])
		changed := l.changed
		l.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-time.After(20 * time.Millisecond): // to notice Fail
		}
	}
}

func (n *memNodeLog) Last(_ context.Context, count int) ([]Record, []byte, error) {
	if err := n.m.failure(); err != nil {
		return nil, nil, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs[len(l.recs)-min(count, len(l.recs)):]), l.stateLocked(), nil
}

func (l *memLog) stateLocked() []byte {
	if !l.holderLocked(l.lease, time.Now()) {
		return nil
	}
	return l.state
}

func (n *memNodeLog) State(context.Context) ([]byte, error) {
	if err := n.m.failure(); err != nil {
		return nil, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stateLocked(), nil
}

func (n *memNodeLog) Acquire(_ context.Context, lease string, ttl time.Duration) (bool, time.Duration, error) {
	if err := n.m.failure(); err != nil {
		return false, 0, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Before(l.leaseUntil) {
		return false, l.leaseUntil.Sub(now), nil
	}
	l.lease, l.leaseUntil, l.state, l.appended = lease, now.Add(ttl), nil, ""
	return true, 0, nil
}

func (n *memNodeLog) Renew(_ context.Context, lease string, ttl time.Duration) (bool, error) {
	if err := n.m.failure(); err != nil {
		return false, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.holderLocked(lease, now) {
		return false, nil
	}
	l.leaseUntil = now.Add(ttl)
	return true, nil
}

func (n *memNodeLog) Release(_ context.Context, lease string) error {
	if err := n.m.failure(); err != nil {
		return err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease == lease {
		l.lease, l.leaseUntil, l.state, l.appended = "", time.Time{}, nil, ""
	}
	return nil
}

func (n *memNodeLog) Present(_ context.Context, node string, ttl time.Duration) error {
	if err := n.m.failure(); err != nil {
		return err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if ttl <= 0 {
		delete(l.presence, node)
	} else {
		l.presence[node] = time.Now().Add(ttl)
	}
	return nil
}

func (n *memNodeLog) Presence(context.Context) (int, error) {
	if err := n.m.failure(); err != nil {
		return 0, err
	}
	l := n.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for node, until := range l.presence {
		if !now.Before(until) {
			delete(l.presence, node)
		}
	}
	return len(l.presence), nil
}
