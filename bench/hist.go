//go:build linux

package main

import (
	"math"
	"math/bits"
	"time"
)

// Hist is a latency histogram with log-linear buckets, in the manner of an
// HDR histogram: values in nanoseconds are grouped by their power of two,
// and each power is split into histSub linear sub-buckets, so that a
// bucket is never wider than 1/histSub of the values it holds (3%). Values
// below 2*histSub are exact. The zero value is empty and ready to use.
type Hist struct {
	Counts [histBuckets]uint64 `json:"-"`
	N      uint64              `json:"n"`
	Sum    int64               `json:"sum"` // nanoseconds
	Min    int64               `json:"min"`
	Max    int64               `json:"max"`
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	// histBuckets covers every int64: the top power of two, 2^62, ends at
	// index (62-histSubBits)*histSub + 2*histSub - 1.
	histBuckets = (63-histSubBits)*histSub + histSub
)

// histIndex returns the bucket of v (v >= 0).
func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	return e*histSub + int(v>>e)
}

// histBounds returns the smallest and the largest value of bucket i.
func histBounds(i int) (lo, hi int64) {
	if i < 2*histSub {
		return int64(i), int64(i)
	}
	e := i/histSub - 1
	sub := int64(i - e*histSub)
	return sub << e, (sub+1)<<e - 1
}

// Record adds one value; a negative one counts as 0.
func (h *Hist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if h.N == 0 || v < h.Min {
		h.Min = v
	}
	if v > h.Max {
		h.Max = v
	}
	h.N++
	h.Sum += v
	h.Counts[histIndex(v)]++
}

// Merge adds every value of o.
func (h *Hist) Merge(o *Hist) {
	if o.N == 0 {
		return
	}
	if h.N == 0 || o.Min < h.Min {
		h.Min = o.Min
	}
	if o.Max > h.Max {
		h.Max = o.Max
	}
	h.N += o.N
	h.Sum += o.Sum
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
}

// Reset empties the histogram.
func (h *Hist) Reset() { *h = Hist{} }

// Quantile returns the value at quantile q (0 to 1): the upper bound of the
// bucket holding the value of that rank, never above the largest value
// recorded. It returns 0 for an empty histogram.
func (h *Hist) Quantile(q float64) int64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.N)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			_, hi := histBounds(i)
			return min(max(hi, h.Min), h.Max)
		}
	}
	return h.Max
}

// Mean returns the mean value, or 0 for an empty histogram.
func (h *Hist) Mean() float64 {
	if h.N == 0 {
		return 0
	}
	return float64(h.Sum) / float64(h.N)
}

// Duration returns Quantile(q) as a time.Duration.
func (h *Hist) Duration(q float64) time.Duration { return time.Duration(h.Quantile(q)) }

// histWire is how a Hist crosses a process boundary: only the buckets in
// use, as [index, count] pairs.
type histWire struct {
	Buckets [][2]uint64 `json:"buckets"`
	N       uint64      `json:"n"`
	Sum     int64       `json:"sum"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
}

func (h *Hist) wire() histWire {
	w := histWire{N: h.N, Sum: h.Sum, Min: h.Min, Max: h.Max}
	for i, c := range h.Counts {
		if c != 0 {
			w.Buckets = append(w.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return w
}

func (w histWire) hist() *Hist {
	h := &Hist{N: w.N, Sum: w.Sum, Min: w.Min, Max: w.Max}
	for _, b := range w.Buckets {
		if b[0] < histBuckets {
			h.Counts[b[0]] += b[1]
		}
	}
	return h
}
