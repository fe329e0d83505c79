package proxy

import (
	"context"
	"errors"
	"sync"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
)

// sharedReads are the store reads in flight, by key and write epoch. A
// request that finds no usable tier entry and no miss fill for its key
// waits on a read of the same key already on its way to the store rather
// than sending its own: in a stampede on a cold key, the requests that
// arrive while the first one's read is out share it, instead of each
// queueing a read of its own ahead of the first one's reply (on a
// saturated machine that reply's goroutine waits its turn behind all of
// them). Only a read begun under the same write epoch is shared
// (writeEpochs): after a write through this process, new requests read for
// themselves.
//
// Reads are pooled: a hit read from Redis allocates nothing here.
type sharedReads struct {
	mu   sync.Mutex
	m    map[keyEpoch]*sharedRead
	pool sync.Pool
}

// sharedRead is one read in flight. Its result fields are written by the
// leader before done.Done and read by the others after done.Wait.
type sharedRead struct {
	done  sync.WaitGroup
	refs  int // guarded by sharedReads.mu: the leader and its waiters
	e     cache.Entry
	gen   uint64
	ok    bool
	err   error
	ended uint64 // the leader's fillEpochs count, read before its read
}

// read returns the store's answer for k, from a read of k under write
// epoch written already in flight or from one of its own, which others may
// share. ended is the key's fillEpochs count from before the read (if the
// handler has no tier).
func (h *Handler) read(ctx context.Context, k cache.Key, written uint64) (e cache.Entry, gen uint64, ok bool, ended uint64, err error) {
	s := &h.reads
	mk := keyEpoch{k, written}
	s.mu.Lock()
	if r, found := s.m[mk]; found {
		r.refs++
		s.mu.Unlock()
		h.m.SharedReads.Inc()
		r.done.Wait()
		e, gen, ok, err, ended = r.e, r.gen, r.ok, r.err, r.ended
		s.release(r)
		if err != nil {
			// Counted per request, as if it had read for itself: the
			// error ratio is per answered request. Logged once, by the
			// leader.
			h.m.CacheErrors.WithLabelValues(metrics.OpGet).Inc()
		}
		return e, gen, ok, ended, err
	}
	r, _ := s.pool.Get().(*sharedRead)
	if r == nil {
		r = &sharedRead{}
	}
	r.refs = 1
	r.done.Add(1)
	if s.m == nil {
		s.m = map[keyEpoch]*sharedRead{}
	}
	s.m[mk] = r
	s.mu.Unlock()
	// Deferred, so that the others are let go even if the read panics
	// (they then see an error and read nothing from it).
	defer func() {
		r.e, r.gen, r.ok, r.err, r.ended = e, gen, ok, err, ended
		if p := recover(); p != nil {
			r.err = errSharedReadFailed
			defer panic(p)
		}
		s.mu.Lock()
		delete(s.m, mk)
		s.mu.Unlock()
		r.done.Done()
		s.release(r)
	}()

	if h.local == nil {
		ended = h.ended.now(k) // before the read: see fillEpochs
	}
	// Others may wait on this read: it must not end with this request's
	// client (the cache budget bounds it).
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	e, gen, ok, err = h.lookupStore(ctx, k)
	return e, gen, ok, ended, err
}

// errSharedReadFailed is what the requests waiting on a shared read get if
// the read panicked.
var errSharedReadFailed = errors.New("the shared cache read failed")

// release drops one reference to r, and pools it after the last one.
func (s *sharedReads) release(r *sharedRead) {
	s.mu.Lock()
	r.refs--
	last := r.refs == 0
	s.mu.Unlock()
	if last {
		*r = sharedRead{} // drops the entry and error; a zero WaitGroup is ready for reuse
		s.pool.Put(r)
	}
}
