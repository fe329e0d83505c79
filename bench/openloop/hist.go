package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits buckets, so a recorded value is known to within 1/2^subBits
// (0.8%) of itself, like an HdrHistogram with two significant digits.
const subBits = 7

// maxExp bounds the values kept exactly enough: 2^(maxExp+subBits+1) ns is
// about 4.6 minutes. Longer values land in the last bucket (max stays exact).
const maxExp = 30

const nBuckets = (maxExp + 2) << subBits

// histogram counts durations in log-linear buckets. Record is safe for
// concurrent use (atomic adds: at these rates contention is negligible),
// so every worker writes into the same one. The zero value is empty.
type histogram struct {
	counts [nBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

// bucket returns the bucket of v nanoseconds: values below 2^(subBits+1)
// have a bucket each; above, each power of two has 2^subBits of them.
func bucket(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 2<<subBits {
		return int(u)
	}
	e := bits.Len64(u) - subBits - 1 // u>>e is in [2^subBits, 2^(subBits+1))
	if e > maxExp {
		return nBuckets - 1
	}
	return (e+1)<<subBits + int(u>>e) - 1<<subBits
}

// upper returns the largest value that falls in bucket b.
func upper(b int) int64 {
	if b < 2<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	m := uint64(b&(1<<subBits-1) + 1<<subBits)
	return int64((m+1)<<e - 1)
}

// Record adds one duration.
func (h *histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucket(v)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest duration recorded, exactly (0 if none).
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the smallest bucket bound that at least q of the
// recorded durations do not exceed (q in [0, 1]), never more than Max: an
// over-estimate by at most one bucket's width (0.8%). 0 if nothing was
// recorded. Call it once recording is over.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			if b == nBuckets-1 { // the overflow bucket: bounded only by max
				return h.Max()
			}
			return min(time.Duration(upper(b)), h.Max())
		}
	}
	return h.Max()
}
