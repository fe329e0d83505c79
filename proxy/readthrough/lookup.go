package readthrough

import (
	"context"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
)

// lookup reads the cache within the cache budget. A cache failure is
// counted and reported as a miss (err says so): the cache is an
// optimisation, never a dependency.
func (e *Engine) lookup(ctx context.Context, k cache.Key) (en cache.Entry, gen uint64, ok bool, err error) {
	if en, gen, ok := e.lookupLocal(k); ok {
		return en, gen, true, nil
	}
	return e.lookupStore(ctx, k)
}

// lookupLocal is lookup's first step: the in-process tier, if there is
// one. No I/O, so no deadline to set up.
func (e *Engine) lookupLocal(k cache.Key) (en cache.Entry, gen uint64, ok bool) {
	if e.local == nil {
		return cache.Entry{}, 0, false
	}
	if en, gen, ok := e.local.GetLocal(k); ok && !e.pending.has(k.ID) {
		return en, gen, true
	}
	return cache.Entry{}, 0, false
}

// lookupStore is lookup's second step: the store, within the cache budget.
func (e *Engine) lookupStore(ctx context.Context, k cache.Key) (en cache.Entry, gen uint64, ok bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, e.cacheTO)
	defer cancel()
	return e.getStore(ctx, rctx, k)
}

// getStore reads k from the store within rctx, which bounds the read;
// ctx is the caller's own, which the retries of pending invalidations
// that a successful read starts take their values from.
func (e *Engine) getStore(ctx, rctx context.Context, k cache.Key) (en cache.Entry, gen uint64, ok bool, err error) {
	en, gen, ok, err = e.store.Get(rctx, k)
	if err != nil {
		e.m.CacheErrors.WithLabelValues(metrics.OpGet).Inc()
		e.log.Warn("cache read failed; treating as a miss", "id", k.ID, "err", err)
		return cache.Entry{}, 0, false, err
	}
	// Written while the cache was unreachable: this entry may predate the
	// write, whose invalidation has not been applied yet. (Checked before
	// retrying, which could apply it after this read.)
	if ok && e.pending.has(k.ID) {
		ok = false
	}
	e.retryPending(ctx)
	return en, gen, ok, nil
}

// storeRead is one store read's answer, as shared by the requests that
// wait on it.
type storeRead struct {
	e     cache.Entry
	gen   uint64
	ok    bool
	ended uint64 // the key's ended count, read before the read
}

// read returns the store's answer for k: from a read of k under write
// epoch written already in flight, or from one of its own that others may
// share (coalesce.Reads). In a stampede on a cold key, the requests that
// arrive while the first one's read is out share it, instead of each
// queueing a read of its own ahead of the first one's reply. Only a read
// begun under the same write epoch is shared: after a write through this
// process, new requests read for themselves. ended is the key's count of
// ended fills from before the read, when there is no tier (see fill.go).
func (e *Engine) read(k cache.Key, written uint64) (en cache.Entry, gen uint64, ok bool, ended uint64, err error) {
	sr, shared, err := e.reads.Do(keyEpoch{k, written}, e.m.SharedReads.Inc, func() (storeRead, error) {
		var sr storeRead
		if e.local == nil {
			sr.ended = e.endedNow(k) // before the read
		}
		// The read serves every request that joins it, so it carries
		// none of one request's cancellation or values: the cache budget
		// bounds it, as a budget that costs no allocation.
		b := newBudget(e.cacheTO)
		var err error
		sr.e, sr.gen, sr.ok, err = e.getStore(context.Background(), b, k)
		b.release()
		return sr, err
	})
	if shared && err != nil {
		// Counted per request, as if it had read for itself: the error
		// ratio is per answered request. Logged once, by the reader.
		e.m.CacheErrors.WithLabelValues(metrics.OpGet).Inc()
	}
	return sr.e, sr.gen, sr.ok, sr.ended, err
}
