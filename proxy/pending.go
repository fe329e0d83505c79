package proxy

import (
	"context"
	"sync"
	"sync/atomic"
)

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

// invalidate drops every scope of user id, and if the cache cannot be
// reached remembers it for a retry. source labels the metric.
func (h *Handler) invalidate(ctx context.Context, id, source string) error {
	ctx, cancel := context.WithTimeout(ctx, h.cacheTO)
	defer cancel()
	// Whatever the cache says, the write has happened: fills begun before
	// it are not for requests sent after it (writeEpochs).
	defer h.written.wrote(id)
	if err := h.store.Invalidate(ctx, id); err != nil {
		h.m.CacheErrors.WithLabelValues("invalidate").Inc()
		if h.pending.add(id) {
			h.log.Warn("invalidation failed; will retry when the cache answers", "id", id, "err", err)
		} else {
			h.log.Error("invalidation failed and the retry set is full; entries expire with their TTL", "id", id, "err", err)
		}
		return err
	}
	h.m.Invalidations.WithLabelValues(source).Inc()
	return nil
}

// retryPending starts one background flush of the remembered
// invalidations, if there are any and none is running. Called after a
// successful cache read: the cache is answering again.
func (h *Handler) retryPending() {
	if h.pending.n.Load() == 0 || !h.pending.flushing.CompareAndSwap(false, true) {
		return
	}
	h.refreshes.Add(1)
	go func() {
		defer h.refreshes.Done()
		defer h.pending.flushing.Store(false)
		h.pending.mu.Lock()
		ids := make([]string, 0, len(h.pending.ids))
		for id := range h.pending.ids {
			ids = append(ids, id)
		}
		h.pending.mu.Unlock()
		for _, id := range ids {
			if h.bg.Err() != nil {
				return
			}
			ctx, cancel := context.WithTimeout(h.bg, h.cacheTO)
			err := h.store.Invalidate(ctx, id)
			cancel()
			if err != nil {
				return // still unreachable: the next successful read retries
			}
			h.pending.mu.Lock()
			delete(h.pending.ids, id)
			h.pending.n.Store(int64(len(h.pending.ids)))
			h.pending.mu.Unlock()
			h.m.Invalidations.WithLabelValues("retry").Inc()
			h.log.Info("retried invalidation succeeded", "id", id)
		}
	}()
}
