package readthrough

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough/coalesce"
	"github.com/userproxy/userproxy/upstream"
)

// How fills coalesce. A fill is one upstream call for a key, shared by
// every request that wants the key while it runs (flights, keyed by
// flightKey). Three counts keep the sharing honest:
//
//   - misses: the ordinary miss fills in flight, by key and write epoch. A
//     request that finds one waits on it without reading the cache first:
//     until that fill returns, the cache cannot hold a newer answer for the
//     key than the one on its way. In a stampede that is one cache read
//     for the herd. Background refreshes are not registered: a reader with
//     a usable entry must never wait on one.
//   - written: invalidations this process completed, per group of ids. A
//     fill that began before a write may carry the answer the write
//     replaced, so a request shares a fill (or a store read) only with
//     requests that read the same count. A purge of everything moves
//     every id's count. Writes through other replicas reach this
//     process's tier, not its fills.
//   - ended: fills ended, per group of keys. Without an in-process tier, a
//     fill's leader re-reads the store only if a fill of its key may have
//     ended since its request's own lookup (and stored the answer).

// keyEpoch is a key under a write epoch: a miss fill's registration, or a
// shared read's.
type keyEpoch struct {
	k     cache.Key
	epoch uint64
}

// writtenNow is id's write epoch: the invalidations of its group, plus the
// purges of everything. Both only grow, so the sum moves with either.
func (e *Engine) writtenNow(id string) uint64 {
	return e.written.Now(coalesce.Hash(id)) + e.writtenAll.Load()
}

// endedNow is k's count of ended fills.
func (e *Engine) endedNow(k cache.Key) uint64 { return e.ended.Now(coalesce.Hash2(k.ID, k.Scope)) }

// flightKey names the single flight for k under write epoch written.
// Forced fills (no-cache requests, early refreshes) fly apart from ordinary
// misses: an ordinary fill may answer from the cache, which a forced one
// must not.
func flightKey(k cache.Key, force bool, written uint64) string {
	fk := k.ID + "\x00" + k.Scope + "\x00" + strconv.FormatUint(written, 36)
	if force {
		return fk + "\x00force"
	}
	return fk
}

// fillResult is the outcome of one fill, shared by every request that
// waited on it. Its fields are read-only once the fill returns.
type fillResult struct {
	entry     cache.Entry // answer to serve: a cached entry or the upstream's answer
	ttl       time.Duration
	fromCache bool // the re-check inside the fill found a fresh entry
	stored    bool // entry was written to the cache
	cacheErr  bool // the cache could not be read, so nothing was stored
	fleet     bool // answered from another replica's fill (Leases)
	err       error
}

// lookupResult is what a request's own lookup read, handed to its fill.
type lookupResult struct {
	gen   uint64 // the user's generation then
	done  bool   // a lookup was made (not for no-cache requests)
	err   bool   // it failed: the cache is unavailable
	epoch uint64 // without a tier, the key's ended count before it
}

// fill returns the answer for k, making at most one upstream call per
// flight key at a time in this process. force skips answering from the
// cache; written is k's write epoch, read before the request's cache read.
// err is non-nil only when ctx ended before the fill did; the fill itself
// carries on for the other waiters and the cache. register, when this call
// leads the fill, registers it as k's miss fill while it runs.
func (e *Engine) fill(ctx context.Context, r *Request, k cache.Key, cred upstream.Credentials, force bool, written uint64, seen lookupResult, register bool) (res *fillResult, collapsed bool, err error) {
	res, collapsed, err = e.flights.DoThen(ctx, flightKey(k, force, written), func() (*fillResult, func(), error) {
		ke := keyEpoch{k, written}
		if register {
			e.misses.Add(ke)
		}
		// Detached from the client that happens to lead: its leaving
		// must neither cancel the other waiters' answer nor count as an
		// upstream failure. Bounded by FillTimeout instead.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(forwardContext(ctx, r)), e.fillTO)
		res, then := e.doFill(fctx, k, cred, force, seen)
		done := func() {
			cancel()
			if register {
				e.misses.Remove(ke)
			}
		}
		if then == nil {
			done()
			return res, nil, nil
		}
		// Answered; the fill stays registered, and joinable, until its
		// store is done.
		return res, func() {
			defer done()
			then()
		}, nil
	}, e.spawn)
	if err != nil {
		return nil, collapsed, err
	}
	if collapsed {
		e.m.Coalesced.Inc()
	}
	return res, collapsed, nil
}

// spawn runs f, the rest of a fill that has answered (its store), on a
// goroutine of its own that Close and Settle wait for.
func (e *Engine) spawn(f func()) {
	e.storing.add(1)
	go func() {
		defer e.storing.add(-1)
		f()
	}()
}

// inflight counts work in progress. Unlike a sync.WaitGroup's, its wait may
// run while work is added (Settle during other requests' fills).
type inflight struct {
	mu   sync.Mutex
	n    int
	idle sync.Cond // signalled when n drops to 0; L is &mu
}

func (f *inflight) add(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n += d
	if f.n == 0 && f.idle.L != nil {
		f.idle.Broadcast()
	}
}

// wait returns once no work is in progress.
func (f *inflight) wait() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle.L == nil {
		f.idle.L = &f.mu
	}
	for f.n > 0 {
		f.idle.Wait()
	}
}

// Settle waits until every fill that has answered has finished its store,
// so that a request sent afterwards finds what they stored. Requests that
// come earlier join those fills instead. Tests use it to order requests;
// Close waits the same way.
func (e *Engine) Settle() { e.storing.wait() }

// doFill runs inside the single flight for k. It returns the answer as
// soon as there is one, and then, the rest of the fill (the store) to run
// after the answer, or nil when nothing is left to do. Cold misses answer
// before the store: requests that arrive while it runs join the fill
// (still registered) and get its answer; Stored means the store was
// issued.
func (e *Engine) doFill(ctx context.Context, k cache.Key, cred upstream.Credentials, force bool, seen lookupResult) (res *fillResult, then func()) {
	// Re-check the cache inside the flight: a flight for this key that
	// finished between our lookup and this call has already stored the
	// answer, and must not cost a second upstream call. The generation the
	// store checks when we write must be read before the upstream call: an
	// invalidation in between then makes the write a no-op.
	//
	// With an in-process tier the re-check costs no I/O (a finished flight
	// stored into the tier too) and the request's own lookup, just made,
	// supplies the generation. Without one, the store is re-read only if a
	// fill for the key may have ended since that lookup: a fill ends once
	// its store is done (ended, bumped last).
	ended := func() { e.ended.Bump(coalesce.Hash2(k.ID, k.Scope)) }
	var gen uint64
	var cacheErr bool
	switch {
	case e.local != nil && seen.done:
		if en, _, ok := e.local.GetLocal(k); ok && !force && e.now().Before(en.Expires) && !e.pending.has(k.ID) {
			ended()
			return &fillResult{entry: en, fromCache: true}, nil
		}
		gen, cacheErr = seen.gen, seen.err
	case seen.done && e.endedNow(k) == seen.epoch:
		gen, cacheErr = seen.gen, seen.err
	default:
		en, g, ok, err := e.lookup(ctx, k)
		if ok && !force && e.now().Before(en.Expires) {
			ended()
			return &fillResult{entry: en, fromCache: true}, nil
		}
		gen, cacheErr = g, err != nil
	}

	if e.leases != nil && !force {
		// The fleet's lease: one upstream call per key across replicas.
		// Without a cache to read (cacheErr), the lease could only cost
		// time: fill alone, as the cache is down anyway.
		if cacheErr {
			e.m.FillLeases.WithLabelValues(metrics.LeaseFallback).Inc()
		} else if res, then := e.leased(ctx, k, cred, gen); res != nil {
			return res, andThen(then, ended)
		}
	}
	res = e.fetch(ctx, k, cred)
	res.cacheErr = cacheErr && res.err == nil && res.ttl > 0
	if !e.storable(res, cacheErr) {
		ended()
		return res, nil
	}
	res.stored = true // issued: it runs right after the answer
	return res, func() {
		e.store1(ctx, k, res.entry, e.retention(res.entry.Status, res.ttl), gen)
		ended()
	}
}

// storable reports whether res, just fetched, is to be stored: data (ttl >
// 0) when the cache could be read and its breaker is not open. A store
// that cannot be attempted is not announced as one (Cache-Status stored).
func (e *Engine) storable(res *fillResult, cacheErr bool) bool {
	if res.err != nil || res.ttl == 0 || cacheErr {
		return false
	}
	b, ok := e.store.(interface{ BreakerState() cache.BreakerState })
	return !ok || b.BreakerState() != cache.BreakerOpen
}

// andThen is f, then g; f may be nil.
func andThen(f, g func()) func() {
	if f == nil {
		return g
	}
	return func() {
		f()
		g()
	}
}

// errInvalidJSON is a 200 whose body is not JSON: never stored, never served.
var errInvalidJSON = errors.New("upstream answered 200 with a body that is not valid JSON")

// fetch calls the upstream and sorts its answer: data to store (ttl > 0),
// an answer to pass on unstored, or an error.
func (e *Engine) fetch(ctx context.Context, k cache.Key, cred upstream.Credentials) *fillResult {
	began := e.now()
	resp, err := e.upstream.Fetch(ctx, k.ID, cred)
	if err != nil {
		e.log.Warn("upstream fetch failed", "id", k.ID, "err", err)
		return &fillResult{err: err}
	}
	now := e.now()
	entry := cache.Entry{
		Status:      resp.Status,
		ContentType: resp.Header.Get("Content-Type"),
		Body:        resp.Body,
		Stored:      now,
		Fetch:       now.Sub(began),
	}
	var ttl time.Duration
	switch {
	case resp.Status == http.StatusOK:
		// The body is only checked, never decoded and re-encoded: clients
		// get the upstream's exact bytes.
		if !json.Valid(resp.Body) {
			e.log.Warn("upstream body is not JSON; not stored", "id", k.ID)
			return &fillResult{err: errInvalidJSON}
		}
		if e.redact != nil {
			body, err := redact(resp.Body, e.redact)
			if err != nil { // cannot happen for valid JSON; refuse rather than leak
				return &fillResult{err: errInvalidJSON}
			}
			entry.Body = body
		}
		ttl = e.jittered(e.ttl)
	case resp.Status == http.StatusNotFound:
		ttl = e.jittered(e.negTTL)
	case resp.Status == http.StatusTooManyRequests || resp.Status >= 500:
		return &fillResult{err: &upstreamStatusError{status: resp.Status, retryAfter: resp.Header.Get("Retry-After")}}
	}
	// 401, 403 and anything else fall through with ttl 0: the caller's own
	// business, passed on and never stored.
	entry.Header = e.replayable(resp.Header, entry.Status, entry.Body)
	if ttl > 0 {
		entry.Expires = now.Add(ttl)
	}
	return &fillResult{entry: entry, ttl: ttl}
}

// store1 writes one entry within the cache budget and reports whether it was
// stored. A write refused because the user was invalidated meanwhile is the
// stale-set race working as designed, not a cache error.
func (e *Engine) store1(ctx context.Context, k cache.Key, en cache.Entry, ttl time.Duration, gen uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, e.cacheTO)
	defer cancel()
	err := e.store.Set(ctx, k, en, ttl, gen)
	switch {
	case err == nil:
		return true
	case errors.Is(err, cache.ErrGenerationChanged):
		e.m.StaleSetRefused.Inc()
		return false
	default:
		e.m.CacheErrors.WithLabelValues(metrics.OpSet).Inc()
		e.log.Warn("cache write failed", "id", k.ID, "err", err)
		return false
	}
}
