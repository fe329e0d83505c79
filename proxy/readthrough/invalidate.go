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

// The causes of an invalidation.
const (
	CauseWrite    Cause = "write"     // a write to a user through the proxy succeeded
	CauseCreate   Cause = "create"    // a user was created through the proxy
	CauseRoles    Cause = "roles"     // a role changed through the proxy: every member's roles field
	CauseAdmin    Cause = "admin"     // an operator's purge of one user
	CauseAdminAll Cause = "admin_all" // an operator's purge of everything
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

// InvalidateAll drops every user's entries, for every replica sharing the
// store (its in-process tiers hear of it), and returns once that first pass
// is done: requests sent after it neither read an older entry nor share a
// fill begun before it. A second pass follows in the background once every
// fill that was in flight has ended (fills are bounded by FillTimeout): it
// catches what those fills stored for users the first pass could not fence
// (see cache.Redis.InvalidateAll). If the store cannot be reached, every
// entry is treated as a miss until a retried purge succeeds, and the error
// wraps ErrCacheUnavailable. ctx bounds the first pass.
func (e *Engine) InvalidateAll(ctx context.Context, cause Cause) error {
	all, ok := e.store.(AllInvalidator)
	if !ok {
		return ErrNotSupported
	}
	// Whatever the store says, fills begun before now are not for
	// requests sent after it.
	defer e.writtenAll.Add(1)
	if err := all.InvalidateAll(ctx); err != nil {
		e.m.CacheErrors.WithLabelValues(metrics.OpInvalidate).Inc()
		e.pending.addAll()
		e.log.Error("purge of every entry failed; every entry is a miss until a retry succeeds", "cause", string(cause), "err", err)
		return errors.Join(ErrCacheUnavailable, err)
	}
	e.m.Invalidations.WithLabelValues(string(cause)).Inc()
	e.goBackground(ctx, e.fillTO+e.purgeTO, func(ctx context.Context) {
		t := time.NewTimer(e.fillTO)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if err := all.InvalidateAll(ctx); err != nil {
			e.m.CacheErrors.WithLabelValues(metrics.OpInvalidate).Inc()
			e.log.Warn("second pass of a purge failed; entries that fills in flight stored may stand until they expire", "err", err)
		}
	})
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
	n        atomic.Int64 // len(ids), plus one while all is set: read on the hit path without the lock
	flushing atomic.Bool  // a flush is running

	all atomic.Bool // a purge of everything failed: every entry is suspect

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
	if _, ok := p.ids[id]; !ok {
		p.ids[id] = struct{}{}
		p.n.Add(1)
	}
	return true
}

// addAll remembers that everything must be purged.
func (p *pendingInvalidations) addAll() {
	if p.all.CompareAndSwap(false, true) {
		p.n.Add(1)
	}
}

// doneAll forgets the purge of everything: it has been applied.
func (p *pendingInvalidations) doneAll() {
	if p.all.CompareAndSwap(true, false) {
		p.n.Add(-1)
	}
}

// has reports whether id awaits a retried invalidation (or everything
// does). Lock-free while nothing is pending, which is always on a healthy
// hit path.
func (p *pendingInvalidations) has(id string) bool {
	if p.n.Load() == 0 {
		return false
	}
	if p.all.Load() {
		return true
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
	if _, ok := p.ids[id]; ok {
		delete(p.ids, id)
		p.n.Add(-1)
	}
}

// retryPending starts one background flush of the remembered
// invalidations, if there are any and none is running. Called after a
// successful cache read: the cache is answering again.
func (e *Engine) retryPending(ctx context.Context) {
	if e.pending.n.Load() == 0 || !e.pending.flushing.CompareAndSwap(false, true) {
		return
	}
	ids := e.pending.snapshot()
	all := e.pending.all.Load()
	// Each retry has the cache budget, and a purge of everything its own;
	// the flush as a whole, their sum.
	budget := time.Duration(len(ids)) * e.cacheTO
	if all {
		budget += e.purgeTO
	}
	started := e.goBackground(ctx, budget, func(ctx context.Context) {
		defer e.pending.flushing.Store(false)
		if all {
			actx, cancel := context.WithTimeout(ctx, e.purgeTO)
			err := e.store.(AllInvalidator).InvalidateAll(actx) // only a store that has it sets all
			cancel()
			if err != nil {
				return // still unreachable: the next successful read retries
			}
			e.pending.doneAll()
			e.m.Invalidations.WithLabelValues("retry").Inc()
			e.log.Info("retried purge of every entry succeeded")
		}
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
