//go:build linux

package main

import (
	"math/rand/v2"
	"testing"
)

func TestHistBucketsCoverValues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 31, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<62 + 12345, 1<<63 - 1}
	for range 10000 {
		values = append(values, r.Int64N(int64(1)<<uint(r.IntN(62)+1)))
	}
	for _, v := range values {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of range", v, i)
		}
		lo, hi := histBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= 2*histSub && float64(hi-lo+1) > float64(lo)/histSub+1 {
			t.Fatalf("bucket %d = [%d, %d] wider than 1/%d of its values", i, lo, hi, histSub)
		}
	}
	// Buckets are contiguous.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := histBounds(i - 1)
		lo, _ := histBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, after %d", i, lo, prevHi)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	// 1 ms to 100 ms, one value per microsecond step of 1000.
	for v := int64(1); v <= 100; v++ {
		h.Record(v * 1e6)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50e6}, {0.99, 99e6}, {1, 100e6}, {0, 1e6}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*(1+1.0/histSub) {
			t.Errorf("Quantile(%v) = %d, want %d to 3%% above", c.q, got, c.want)
		}
	}
	if h.Max != 100e6 || h.Min != 1e6 || h.N != 100 {
		t.Errorf("min %d max %d n %d", h.Min, h.Max, h.N)
	}
	if m := h.Mean(); m != 50.5e6 {
		t.Errorf("Mean = %v, want 50.5e6", m)
	}
	var empty Hist
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram has no quantile")
	}
	var neg Hist
	neg.Record(-5)
	if neg.Max != 0 || neg.Quantile(1) != 0 {
		t.Error("a negative value must count as 0")
	}
}

func TestHistMergeAndWire(t *testing.T) {
	var a, b, all Hist
	for v := int64(0); v < 5000; v += 7 {
		a.Record(v * 1000)
		all.Record(v * 1000)
	}
	for v := int64(3); v < 900000; v += 997 {
		b.Record(v * 1000)
		all.Record(v * 1000)
	}
	var m Hist
	m.Merge(a.wire().hist())
	m.Merge(b.wire().hist())
	if m != all {
		t.Fatalf("merged over the wire: n %d min %d max %d sum %d, want n %d min %d max %d sum %d",
			m.N, m.Min, m.Max, m.Sum, all.N, all.Min, all.Max, all.Sum)
	}
	if q, w := m.Quantile(0.9), all.Quantile(0.9); q != w {
		t.Errorf("p90 %d after merge, %d recorded at once", q, w)
	}
}
