package readthrough

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough/coalesce"
)

// Cause says why entries are invalidated; it labels
// userproxy_invalidations_total.
type Cause string

// The causes of an invalidation of one user.
const (
	CauseWrite Cause = "write" // a write through the proxy succeeded
	CauseAdmin Cause = "admin" // an operator's purge
)

// ErrCacheUnavailable is returned by Invalidate when the cache could not be
// reached: the invalidation is remembered and retried once it answers.
var ErrCacheUnavailable = errors.New("readthrough: cache unavailable; the invalidation will be retried when it answers")

// ErrNotSupported is returned by InvalidateAll when the store cannot drop
// everything at once.
var ErrNotSupported = errors.New("readthrough: this cache store cannot drop everything")

// Invalidate drops every scope's entries for user id. If the cache cannot
// be reached it remembers id, keeps the tier from answering for it, and
// retries once the cache answers; it then returns an error wrapping
// ErrCacheUnavailable. Either way, requests sent after Invalidate returns
// never share a fill that began before it.
func (e *Engine) Invalidate(ctx context.Context, id string, cause Cause) error {
	ctx, cancel := context.WithTimeout(ctx, e.cacheTO)
	defer cancel()
	// Whatever the cache says, the write has happened: fills begun before
	// it are not for requests sent after it (see fill.go).
	defer e.written.Bump(coalesce.Hash(id))
	if err := e.store.Invalidate(ctx, id); err != nil {
		e.m.CacheErrors.WithLabelValues(metrics.OpInvalidate).Inc()
		if e.pending.add(id) {
			e.log.Warn("invalidation failed; will retry when the cache answers", "id", id, "err", err)
		} else {
			e.log.Error("invalidation failed and the retry set is full; entries expire with their TTL", "id", id, "err", err)
		}
		return errors.Join(ErrCacheUnavailable, err)
	}
	e.m.Invalidations.WithLabelValues(string(cause)).Inc()
	return nil
}

// InvalidateAll drops everything, twice: the second pass, once every fill
// that was in flight during the first has finished (fills are bounded by
// FillTimeout, which is how long InvalidateAll takes), catches what those
// fills stored for users the first pass could not fence (see
// cache.Redis.InvalidateAll). ctx bounds the whole.
func (e *Engine) InvalidateAll(ctx context.Context) error {
	all, ok := e.store.(AllInvalidator)
	if !ok {
		return ErrNotSupported
	}
	err := all.InvalidateAll(ctx)
	if err == nil {
		t := time.NewTimer(e.fillTO)
		select {
		case <-t.C:
			err = all.InvalidateAll(ctx)
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
		}
	}
	if err != nil {
		e.m.CacheErrors.WithLabelValues(metrics.OpInvalidate).Inc()
		e.log.Error("cache purge failed", "err", err)
		return err
	}
	e.m.Invalidations.WithLabelValues("admin_all").Inc()
	return nil
}

// maxPending bounds the invalidations remembered while the cache is
// unreachable. Past it, further ones are only logged: their entries expire
// with their TTL.
const maxPending = 10000

// pendingInvalidations remembers users whose invalidation failed (the cache
// was unreachable), so it can be retried once the cache answers again:
// otherwise entries that predate a write could be served until they expire.
type pendingInvalidations struct {
	n        atomic.Int64 // len(ids), read on the hit path without the lock
	flushing atomic.Bool  // a flush is running

	mu  sync.Mutex          // protects ids
	ids map[string]struct{} // users to invalidate
}

// add remembers id; it reports false when the set is full.
func (p *pendingInvalidations) add(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string]struct{}{}
	}
	if _, ok := p.ids[id]; !ok && len(p.ids) >= maxPending {
		return false
	}
	p.ids[id] = struct{}{}
	p.n.Store(int64(len(p.ids)))
	return true
}

// has reports whether id awaits a retried invalidation. Lock-free while
// nothing is pending, which is always on a healthy hit path.
func (p *pendingInvalidations) has(id string) bool {
	if p.n.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ids[id]
	return ok
}

// snapshot returns the ids awaiting a retry.
func (p *pendingInvalidations) snapshot() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.ids))
	for id := range p.ids {
		ids = append(ids, id)
	}
	return ids
}

// done forgets id: its invalidation has been applied.
func (p *pendingInvalidations) done(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ids, id)
	p.n.Store(int64(len(p.ids)))
}

// retryPending starts one background flush of the remembered
// invalidations, if there are any and none is running. Called after a
// successful cache read: the cache is answering again.
func (e *Engine) retryPending(ctx context.Context) {
	if e.pending.n.Load() == 0 || !e.pending.flushing.CompareAndSwap(false, true) {
		return
	}
	ids := e.pending.snapshot()
	// Each retry has the cache budget; the flush as a whole, that many.
	started := e.goBackground(ctx, time.Duration(len(ids))*e.cacheTO, func(ctx context.Context) {
		defer e.pending.flushing.Store(false)
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, e.cacheTO)
			err := e.store.Invalidate(rctx, id)
			cancel()
			if err != nil {
				return // still unreachable: the next successful read retries
			}
			e.pending.done(id)
			e.m.Invalidations.WithLabelValues("retry").Inc()
			e.log.Info("retried invalidation succeeded", "id", id)
		}
	})
	if !started {
		e.pending.flushing.Store(false)
	}
}
