package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/userproxy/userproxy/cache"
)

// missFlights are the keys with an ordinary miss fill in progress: a
// request found no usable entry and went to the upstream. Until that fill
// returns, the cache cannot hold a newer answer for the key than the one on
// its way (only the fill writes it, in this process), so a request for the
// same key waits on the fill without reading the cache first. In a
// stampede that is one cache read for the herd instead of one per request,
// and the waiters join the fill at once instead of queueing for Redis
// connections while it runs.
//
// Background refreshes are not registered: a reader with a usable entry
// must never wait on one.
type missFlights struct {
	n  atomic.Int64 // len(m), so the hit path pays one atomic load while there are none
	mu sync.Mutex
	m  map[cache.Key]struct{}
}

// has reports whether a miss fill for k is in progress.
func (f *missFlights) has(k cache.Key) bool {
	if f.n.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[k]
	return ok
}

// add registers a miss fill for k. The caller leads k's single flight,
// and calls remove before the flight returns, so registrations of one key
// never overlap.
func (f *missFlights) add(k cache.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[cache.Key]struct{}{}
	}
	f.m[k] = struct{}{}
	f.n.Store(int64(len(f.m)))
}

// remove unregisters k's miss fill.
func (f *missFlights) remove(k cache.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, k)
	f.n.Store(int64(len(f.m)))
}
