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
// A fill is registered with the write epoch its leader read before its own
// cache read (writeEpochs), and only a request that reads the same epoch
// waits on it: after a write through this process, new requests leave the
// fills that may carry the old answer alone.
//
// Background refreshes are not registered: a reader with a usable entry
// must never wait on one.
type missFlights struct {
	n  atomic.Int64 // len(m), so the hit path pays one atomic load while there are none
	mu sync.Mutex
	m  map[keyEpoch]struct{}
}

// keyEpoch is a key under a write epoch: a miss fill's registration, or a
// shared read's (sharedReads).
type keyEpoch struct {
	k     cache.Key
	epoch uint64
}

// has reports whether a miss fill for k is in progress under write epoch
// epoch.
func (f *missFlights) has(k cache.Key, epoch uint64) bool {
	if f.n.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[keyEpoch{k, epoch}]
	return ok
}

// add registers a miss fill for k under epoch. The caller leads the single
// flight of k and epoch, and calls remove before the flight returns, so
// registrations of one key and epoch never overlap.
func (f *missFlights) add(k cache.Key, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[keyEpoch]struct{}{}
	}
	f.m[keyEpoch{k, epoch}] = struct{}{}
	f.n.Store(int64(len(f.m)))
}

// remove unregisters k's miss fill under epoch.
func (f *missFlights) remove(k cache.Key, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, keyEpoch{k, epoch})
	f.n.Store(int64(len(f.m)))
}

// writeEpochs count the invalidations of users (writes through this
// process, purges of one user) it has completed, per group of user ids (an
// id's group is a hash of it). A fill that began before a write completed
// may carry the answer the write replaced; a request sent after the write
// must not get it. So a request waits on a fill in flight (or joins its
// single flight) only if the epoch it reads equals the one the fill's
// leader read before its own cache read. An invalidation of another id of
// the group only costs a fill of its own.
//
// A purge of everything needs no count: it returns only once every fill
// in flight when it began has ended (purgeAll). Writes through other
// replicas are not counted: their invalidations reach this process's tier,
// not its fills.
type writeEpochs struct {
	groups [256]atomic.Uint64
}

// now is id's epoch.
func (w *writeEpochs) now(id string) uint64 { return w.group(id).Load() }

// wrote counts a completed invalidation of id.
func (w *writeEpochs) wrote(id string) { w.group(id).Add(1) }

// group is id's group: FNV-1a over the id.
func (w *writeEpochs) group(id string) *atomic.Uint64 {
	return &w.groups[fnv1a(fnvOffset, id)%uint32(len(w.groups))]
}

// FNV-1a, 32 bits: fnv1a(h, s) continues hash h over the bytes of s.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnv1a(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}

// fillEpochs counts the fills that have ended, per group of keys (a key's
// group is a hash of it). A fill's leader re-reads the store for its key
// before calling the upstream, in case a fill that ended between its
// request's lookup and its own start has stored the answer. Without an
// in-process tier that re-read is a second store round trip per miss; if
// the count of the key's group has not moved since the lookup began, no
// fill of the key ended in between, in this process, and there is nothing
// new to read. Another key of the group, or another replica's fill, only
// costs the re-read or an upstream call that a replica may make anyway.
type fillEpochs struct {
	groups [256]atomic.Uint64
}

// group is k's group: FNV-1a over the key. A collision costs a re-read.
func (f *fillEpochs) group(k cache.Key) *atomic.Uint64 {
	h := fnv1a(fnvOffset, k.ID) * fnvPrime // then a zero byte between ID and scope
	return &f.groups[fnv1a(h, k.Scope)%uint32(len(f.groups))]
}

// now is k's group's count, to compare with a later one.
func (f *fillEpochs) now(k cache.Key) uint64 { return f.group(k).Load() }

// end counts a fill of k that has ended. The leader calls it before the
// fill returns, so before a new fill of k can start.
func (f *fillEpochs) end(k cache.Key) { f.group(k).Add(1) }
