package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	// Every value lies in its bucket: above the previous bucket's upper
	// bound, at most its own; and a bucket is at most 1/2^subBits of its
	// values wide.
	vals := []int64{0, 1, 255, 256, 257, 1000, 1 << 20, 123456789, 5e9, 1<<38 - 1}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Int64N(1<<38))
	}
	for _, v := range vals {
		b := bucket(v)
		if v > upper(b) {
			t.Fatalf("value %d above its bucket %d's upper bound %d", v, b, upper(b))
		}
		if b > 0 && v <= upper(b-1) {
			t.Fatalf("value %d not above bucket %d's upper bound %d", v, b-1, upper(b-1))
		}
		if lo := upper(b-1) + 1; b > 0 && float64(upper(b)-lo) > float64(lo)/(1<<subBits) {
			t.Fatalf("bucket %d is [%d, %d], wider than 1/%d of its values", b, lo, upper(b), 1<<subBits)
		}
	}
	if got := bucket(1 << 62); got != nBuckets-1 {
		t.Errorf("bucket(2^62) = %d, want the last, %d", got, nBuckets-1)
	}
}

func TestQuantiles(t *testing.T) {
	var h histogram
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("empty histogram: p99 = %v, want 0", got)
	}
	// 1..10000 µs, shuffled: quantile q is q×10000 µs, to within 0.8%.
	vals := make([]time.Duration, 10000)
	for i := range vals {
		vals[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.Record(v)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := time.Duration(q*10000) * time.Microsecond
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/(1<<subBits) {
			t.Errorf("p%v = %v, want %v (+0.8%% at most)", q*100, got, want)
		}
	}
	if got, want := h.Max(), 10000*time.Microsecond; got != want {
		t.Errorf("max = %v, want %v exactly", got, want)
	}
	if got := h.Quantile(1); got != h.Max() {
		t.Errorf("p100 = %v, want max %v", got, h.Max())
	}
	if got := h.Count(); got != 10000 {
		t.Errorf("count = %d, want 10000", got)
	}
}

func TestQuantileOneOutlier(t *testing.T) {
	// 999 fast answers and one stall: p99.9 is the fast ones' (rank 999 of
	// 1000), max is the stall. A histogram that dropped or capped the stall
	// would get max wrong.
	var h histogram
	for range 999 {
		h.Record(200 * time.Microsecond)
	}
	h.Record(3 * time.Second)
	if got := h.Quantile(0.999); got < 200*time.Microsecond || got > 202*time.Microsecond {
		t.Errorf("p99.9 = %v, want 200µs", got)
	}
	if got := h.Max(); got != 3*time.Second {
		t.Errorf("max = %v, want 3s", got)
	}
	got := []time.Duration{h.Quantile(0.5), h.Quantile(0.99), h.Quantile(0.9999)}
	if !slices.IsSorted(got) || got[2] != 3*time.Second {
		t.Errorf("p50, p99, p99.99 = %v, want sorted and the last 3s", got)
	}
}
