package proxy

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/userproxy/userproxy/cache"
)

// jittered shortens ttl by a random fraction in [0, jitter), so entries
// filled in the same second (a deploy, a cold start, a purge) do not all
// expire in the same second and stampede the upstream together. Only ever
// shorter: an operator's -cache-ttl is a promise about staleness.
func (h *Handler) jittered(ttl time.Duration) time.Duration {
	if h.jitter == 0 {
		return ttl
	}
	return time.Duration(float64(ttl) * (1 - h.jitter*h.rand()))
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
func (h *Handler) refreshEarly(e cache.Entry, now time.Time) bool {
	if h.beta == 0 || e.Fetch <= 0 {
		return false
	}
	u := 1 - h.rand() // (0, 1]: ln is finite
	gap := -float64(e.Fetch) * h.beta * math.Log(u)
	return !now.Add(time.Duration(gap)).Before(e.Expires)
}

// retention is how long the store keeps an entry: its fresh lifetime plus the
// longest it may still be served stale. A 404 is never served stale.
func (h *Handler) retention(status int, fresh time.Duration) time.Duration {
	if status != http.StatusOK {
		return fresh
	}
	return fresh + max(h.swr, h.staleErr)
}

// directives is what a client's request asks of the cache.
type directives struct {
	noCache bool // revalidate with the upstream before using a stored answer
	noStore bool // do not use the cache at all, in either direction
}

// clientDirectives reads the Cache-Control field values (and Pragma's, for
// HTTP/1.0 clients, when there is no Cache-Control). max-age=0 asks the
// same as no-cache.
func clientDirectives(cc, pragma []string) directives {
	var d directives
	if len(cc) == 0 {
		for _, p := range pragma {
			if strings.EqualFold(strings.TrimSpace(p), "no-cache") {
				d.noCache = true
			}
		}
		return d
	}
	for _, line := range cc {
		for part := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache":
				d.noCache = true
			case "no-store":
				d.noStore = true
			case "max-age":
				if strings.Trim(strings.TrimSpace(val), `"`) == "0" {
					d.noCache = true
				}
			}
		}
	}
	return d
}
