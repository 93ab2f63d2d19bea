package bridge

import "time"

// ring holds the newest events of a channel, addressed by a sequence number
// that counts every event the channel ever published. It serves as both the
// replay buffer and every subscriber's queue: a subscriber is just a
// position in it. Guarded by Channel.mu.
type ring struct {
	buf  []*Event // grows up to size, then wraps
	size int      // capacity: Options.Replay + Options.Queue
	tail uint64   // oldest sequence number still held
	head uint64   // sequence number of the next event
}

func (r *ring) at(seq uint64) *Event { return r.buf[seq%uint64(r.size)] }

// push appends e, dropping the oldest event when full.
func (r *ring) push(e *Event) {
	if r.head-r.tail == uint64(r.size) {
		r.buf[r.tail%uint64(r.size)] = nil
		r.tail++
	}
	if i := r.head % uint64(r.size); int(i) < len(r.buf) {
		r.buf[i] = e
	} else {
		r.buf = append(r.buf, e)
	}
	r.head++
}

// trim drops events from the tail that are out of the replay window (before
// sequence number from, or older than oldest), except those from keep on,
// which a subscriber has yet to read.
func (r *ring) trim(keep, from uint64, oldest time.Time) {
	for r.tail < keep && (r.tail < from || r.at(r.tail).Time.Before(oldest)) {
		r.buf[r.tail%uint64(r.size)] = nil
		r.tail++
	}
}

// reset drops every event.
func (r *ring) reset() {
	for r.tail < r.head {
		r.buf[r.tail%uint64(r.size)] = nil
		r.tail++
	}
}

// search returns the first sequence number in [from, head) whose event key
// is not less than k (head when there is none). Keys never decrease along
// the ring.
func (r *ring) search(from uint64, k eventKey) uint64 {
	lo, hi := from, r.head
	for lo < hi {
		mid := lo + (hi-lo)/2
		if r.at(mid).key.less(k) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
