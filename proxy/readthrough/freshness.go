package readthrough

import (
	"math"
	"net/http"
	"time"

	"github.com/userproxy/userproxy/cache"
)

// jittered shortens ttl by a random fraction in [0, jitter), so entries
// filled in the same second (a deploy, a cold start, a purge) do not all
// expire in the same second and stampede the upstream together. Only ever
// shorter: an operator's -cache-ttl is a promise about staleness.
func (e *Engine) jittered(ttl time.Duration) time.Duration {
	if e.jitter == 0 {
		return ttl
	}
	return time.Duration(float64(ttl) * (1 - e.jitter*e.rand()))
}

// refreshEarly decides whether a fresh hit should also refresh the entry
// in the background: XFetch (Vattani et al., "Optimal Probabilistic Cache
// Stampede Prevention", VLDB 2015). It refreshes when
//
//	now - fetch·beta·ln(u) >= expires,  u uniform in (0, 1]
//
// so the probability is exp(-remaining/(fetch·beta)): negligible while much
// of the lifetime is left, rising steeply as expiry nears, and earlier for
// entries that take long to fetch. One replica's refresh, not every
// replica's miss, then renews a hot entry.
func (e *Engine) refreshEarly(en cache.Entry, now time.Time) bool {
	if e.beta == 0 || en.Fetch <= 0 {
		return false
	}
	u := 1 - e.rand() // (0, 1]: ln is finite
	gap := -float64(en.Fetch) * e.beta * math.Log(u)
	return !now.Add(time.Duration(gap)).Before(en.Expires)
}

// retention is how long the store keeps an entry: its fresh lifetime plus the
// longest it may still be served stale. A 404 is never served stale.
func (e *Engine) retention(status int, fresh time.Duration) time.Duration {
	if status != http.StatusOK {
		return fresh
	}
	return fresh + max(e.swr, e.staleErr)
}
