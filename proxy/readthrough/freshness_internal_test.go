package readthrough

import (
	"math"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
)

// uniform returns a source that yields n evenly spread values in [0, 1),
// in order, then repeats: a deterministic stand-in for a uniform random
// source, so distribution tests are exact rather than flaky.
func uniform(n int) func() float64 {
	i := 0
	return func() float64 {
		v := (float64(i%n) + 0.5) / float64(n)
		i++
		return v
	}
}

func TestJitterOnlyShortensAndSpreadsEvenly(t *testing.T) {
	const n = 1000
	h := &Engine{jitter: 0.1, rand: uniform(n)}
	ttl := 60 * time.Second
	var buckets [10]int // over [54s, 60s]
	for range n {
		got := h.jittered(ttl)
		if got > ttl || got < 54*time.Second {
			t.Fatalf("jittered(60s) = %s, want within [54s, 60s]", got)
		}
		b := min(int((ttl-got)*10/(6*time.Second)), 9)
		buckets[b]++
	}
	for i, c := range buckets {
		if c != n/10 {
			t.Errorf("bucket %d: got %d lifetimes, want %d (uniform spread)", i, c, n/10)
		}
	}
	if got := (&Engine{}).jittered(ttl); got != ttl {
		t.Errorf("jitter 0: got %s, want %s unchanged", got, ttl)
	}
}

func TestEarlyRefreshProbability(t *testing.T) {
	const n = 10000
	fetch := 100 * time.Millisecond
	expires := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	e := cache.Entry{Status: 200, Expires: expires, Fetch: fetch}
	for _, tc := range []struct {
		beta      float64
		remaining time.Duration
	}{
		{1, 0}, {1, 50 * time.Millisecond}, {1, 100 * time.Millisecond}, {1, 300 * time.Millisecond},
		{1, time.Second}, {2, 100 * time.Millisecond}, {0.5, 100 * time.Millisecond},
	} {
		h := &Engine{beta: tc.beta, rand: uniform(n)}
		now := expires.Add(-tc.remaining)
		count := 0
		for range n {
			if h.refreshEarly(e, now) {
				count++
			}
		}
		// XFetch refreshes with probability exp(-remaining/(fetch·beta)).
		want := float64(n) * math.Exp(-float64(tc.remaining)/(float64(fetch)*tc.beta))
		if math.Abs(float64(count)-want) > 1.5 { // the grid is exact to a step
			t.Errorf("beta %g, %s before expiry: %d of %d refreshed early, want %.0f", tc.beta, tc.remaining, count, n, want)
		}
	}
	// Disabled, or nothing known about the fetch: never.
	for _, h := range []*Engine{{beta: 0, rand: uniform(10)}, {beta: 1, rand: uniform(10)}} {
		noFetch := e
		if h.beta == 1 {
			noFetch.Fetch = 0
		}
		for range 10 {
			if h.refreshEarly(noFetch, expires) {
				t.Fatalf("refreshEarly with beta %g, fetch %s: got true, want false", h.beta, noFetch.Fetch)
			}
		}
	}
}

func TestRetentionKeepsStaleWindowFor200Only(t *testing.T) {
	h := &Engine{swr: 30 * time.Second, staleErr: time.Hour}
	if got, want := h.retention(200, time.Minute), time.Hour+time.Minute; got != want {
		t.Errorf("retention(200, 1m): got %s, want %s", got, want)
	}
	if got, want := h.retention(404, 10*time.Second), 10*time.Second; got != want {
		t.Errorf("retention(404, 10s): got %s, want %s (never served stale)", got, want)
	}
}
