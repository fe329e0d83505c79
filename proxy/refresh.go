package proxy

import (
	"context"
	"strconv"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/upstream"
)

// refreshInBackground refreshes k off the request path: for an entry served
// stale-while-revalidate (force false: it joins, or is joined by, any
// foreground miss for k) or refreshed early (force true: the entry is still
// fresh, so the fill must not short-circuit on it). At most one background
// refresh per flight key runs at a time; callers never wait for it.
func (h *Handler) refreshInBackground(k cache.Key, cred upstream.Credentials, force bool, seen lookupResult, written uint64) {
	fk := flightKey(k, force, written)
	if _, running := h.refreshing.LoadOrStore(fk, struct{}{}); running {
		return
	}
	h.refreshes.Add(1)
	ch := h.flights.DoChan(fk, func() (any, error) {
		ctx, cancel := context.WithTimeout(h.bg, h.fillTO)
		defer cancel()
		return h.doFill(ctx, k, cred, force, seen), nil
	})
	go func() {
		defer h.refreshes.Done()
		defer h.refreshing.Delete(fk)
		select {
		case r := <-ch:
			res := r.Val.(*fillResult)
			result := "not_stored"
			switch {
			case res.err != nil:
				result = "error"
			case res.stored, res.fromCache:
				result = "stored"
			}
			h.m.BackgroundRefreshes.WithLabelValues(result).Inc()
		case <-h.bg.Done():
		}
	}()
}

// Close cancels background refreshes and waits for them to stop. Call it
// after the servers using h have shut down; h must not serve afterwards.
func (h *Handler) Close() {
	h.stopBG()
	h.refreshes.Wait()
	if h.passthrough != nil {
		if t, ok := h.passthrough.Transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
}

// flightKey names the single flight for k under write epoch written
// (writeEpochs). Forced fills (no-cache requests, early refreshes) fly
// apart from ordinary misses: an ordinary fill may answer from the cache,
// which a forced one must not.
func flightKey(k cache.Key, force bool, written uint64) string {
	fk := k.ID + "\x00" + k.Scope + "\x00" + strconv.FormatUint(written, 36)
	if force {
		return fk + "\x00force"
	}
	return fk
}
