package upstream

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	defaultBackoffMin = 250 * time.Millisecond
	defaultBackoffMax = 30 * time.Second
)

// Backoff computes reconnect delays with full jitter: attempt n waits a random
// duration between Min and a cap that doubles from Min up to Max, so
// min(Max, Min*2^n). Reset starts over from Min after a healthy spell.
//
// A Backoff is not safe for concurrent use.
type Backoff struct {
	Min  time.Duration  // default 250ms
	Max  time.Duration  // default 30s; a Max below Min means Min
	Rand func() float64 // returns a value in [0, 1]; default math/rand/v2 Float64

	attempt int // attempts since the last Reset; owned by the caller of Next
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = defaultBackoffMin
	}
	if hi <= 0 {
		hi = defaultBackoffMax
	}
	hi = max(hi, lo)

	ceil := lo
	for range b.attempt {
		if ceil > hi-ceil { // 2*ceil > hi, without overflow
			ceil = hi
			break
		}
		ceil *= 2
	}
	if ceil < hi {
		b.attempt++ // stop counting once the cap is reached: no overflow
	}

	rnd := b.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	r := min(max(rnd(), 0), 1)
	return lo + time.Duration(r*float64(ceil-lo))
}

// Reset makes the next delay start again from Min.
func (b *Backoff) Reset() {
	b.attempt = 0
}

// sleep waits for d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
