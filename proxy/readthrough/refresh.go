package readthrough

import (
	"context"
	"strings"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/upstream"
)

// refreshInBackground refreshes k off the request path: for an entry served
// stale-while-revalidate (force false: it joins, or is joined by, any
// foreground miss for k) or refreshed early (force true: the entry is still
// fresh, so the fill must not short-circuit on it). At most one background
// refresh per flight key runs at a time; callers never wait for it. The
// refresh carries r's request id to the upstream and ends with Close.
func (e *Engine) refreshInBackground(ctx context.Context, r *Request, k cache.Key, cred upstream.Credentials, force bool, seen lookupResult) {
	fk := flightKey(k, force, e.writtenNow(k.ID))
	if _, running := e.refreshing.LoadOrStore(fk, struct{}{}); running {
		return
	}
	ctx = forwardContext(ctx, r) // copied now: r's strings are not ours after Get
	k.ID = strings.Clone(k.ID)
	started := e.goBackground(ctx, e.fillTO, func(ctx context.Context) {
		defer e.refreshing.Delete(fk)
		// Nobody waits on a refresh: its store runs before it ends.
		res, _, err := e.flights.DoThen(ctx, fk, func() (*fillResult, func(), error) {
			res, then := e.doFill(ctx, k, cred, force, seen)
			return res, then, nil
		}, func(then func()) { then() })
		result := "not_stored"
		switch {
		case err != nil: // Close ended it while it waited on another's fill
			return
		case res.err != nil:
			result = "error"
		case res.stored, res.fromCache, res.fleet:
			result = "stored"
		}
		e.m.BackgroundRefreshes.WithLabelValues(result).Inc()
	})
	if !started {
		e.refreshing.Delete(fk)
	}
}
