package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// userRequest is what the read-through path needs of a request. Both
// fronts fill it in: ServeHTTP from a net/http Request, the fasthttp front
// (front.go) from its RequestCtx, so both run exactly the same logic.
type userRequest struct {
	ctx   context.Context
	head  bool       // HEAD: headers only
	auth  string     // the Authorization field value, if exactly one was sent
	nAuth int        // how many Authorization fields were sent
	dir   directives // the client's cache directives

	// On the fasthttp front (front), fwd holds the request's id and trace
	// context; they go into the context only when the upstream is called
	// (upstreamCtx), as a hit does not need them. Under net/http,
	// WithRequestID has already put them in ctx.
	front bool
	fwd   frontForward
}

// upstreamCtx is r's context for work that may call the upstream.
func (r *userRequest) upstreamCtx() context.Context {
	if r.front {
		return upstream.WithForward(r.ctx, r.fwd.forward())
	}
	return r.ctx
}

// httpUserRequest describes r.
func (h *Handler) httpUserRequest(r *http.Request) userRequest {
	u := userRequest{ctx: r.Context(), head: r.Method == http.MethodHead}
	if auth := r.Header["Authorization"]; len(auth) > 0 { // canonical key: no allocation
		u.auth, u.nAuth = auth[0], len(auth)
	}
	if h.honorCC {
		u.dir = clientDirectives(r.Header["Cache-Control"], r.Header["Pragma"])
	}
	return u
}

// serveUser is the read-through path for GET|HEAD /api/users/{id}.
func (h *Handler) serveUser(w http.ResponseWriter, r *userRequest, rawID string) {
	start := h.now()
	id, ok := h.checkID(w, rawID)
	if !ok {
		h.observe(metrics.CacheError, http.StatusBadRequest, start)
		return
	}
	cred, scope, err := h.credentials(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="userproxy", charset="UTF-8"`)
		w.Header().Set("Cache-Status", statusBadCredentials)
		writeJSONError(w, http.StatusUnauthorized, err.Error())
		h.observe(metrics.CacheError, http.StatusUnauthorized, start)
		return
	}
	key := cache.Key{ID: id, Scope: scope}
	dir := r.dir
	if dir.noStore {
		h.serveNoStore(w, r, key, cred, start)
		return
	}

	var stale cache.Entry // an expired 200 that may stand in if the upstream fails
	var haveStale bool
	var written uint64    // the key's write epoch, read before the store (writeEpochs)
	haveWritten := false  // not on a tier hit, which needs none
	var seen lookupResult // what this request's lookup read, for the fill
	joined := false       // waited on a miss fill without reading the cache
	if !dir.noCache {
		// The in-process tier first: a tier hit never looks at the fills
		// in progress.
		e, gen, ok := h.lookupLocal(key)
		var err error
		var epoch uint64
		if !ok {
			written, haveWritten = h.written.now(key.ID), true
		}
		switch {
		case ok:
		case h.misses.has(key, written):
			// A miss fill for this key is running: its answer is the next
			// one the cache will have. Wait for it. seen stays unset: should
			// that fill end first, the one this request then leads re-reads
			// the cache before calling the upstream.
			joined = true
		default:
			e, gen, ok, epoch, err = h.read(r.ctx, key, written)
		}
		if !joined {
			seen = lookupResult{gen: gen, done: true, err: err != nil, epoch: epoch}
		}
		if ok {
			switch {
			case start.Before(e.Expires):
				if h.refreshEarly(e, start) {
					h.m.EarlyRefreshes.Inc()
					h.refreshInBackground(key, cred, true, seen, h.written.now(key.ID))
				}
				h.serveHit(w, r, e, start)
				return
			case e.Status == http.StatusOK && start.Before(e.Expires.Add(h.swr)):
				h.refreshInBackground(key, cred, false, seen, h.written.now(key.ID))
				h.serveStale(w, r, e, start, metrics.StaleRevalidate, "; detail=stale-while-revalidate")
				return
			case e.Status == http.StatusOK && start.Before(e.Expires.Add(h.staleErr)):
				stale, haveStale = e, true
			}
		}
	}

	if !haveWritten {
		written = h.written.now(key.ID)
	}
	res, collapsed, err := h.fill(r.upstreamCtx(), key, cred, dir.noCache, written, seen, !dir.noCache)
	if err != nil {
		// The client went away while waiting on a fill that goes on
		// without it. Nobody reads an answer; 499 says so in metrics.
		h.observe(metrics.CacheMiss, 499, start)
		return
	}
	if res.err != nil && joined {
		// The fill failed: look for a stand-in only now, with this
		// request's own read. What the fill's leader read may predate a
		// write that completed before this request was sent.
		if e, _, ok, err := h.lookup(r.ctx, key); err == nil && ok {
			switch {
			case start.Before(e.Expires): // stored meanwhile (another replica)
				h.serveHit(w, r, e, start)
				return
			case e.Status == http.StatusOK && start.Before(e.Expires.Add(h.staleErr)):
				stale, haveStale = e, true
			}
		}
	}
	switch {
	case res.err != nil:
		f := h.classify(res.err)
		if haveStale {
			reason := metrics.StaleError
			if f.detail == "breaker-open" {
				reason = metrics.StaleBreakerOpen
			}
			h.serveStale(w, r, stale, start, reason, fwdParams(f.fwdStatus, f.detail))
			return
		}
		w.Header().Set("Cache-Status", missStatus(f.fwdStatus, f.detail, false, collapsed))
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		writeJSONError(w, f.status, f.msg)
		h.observe(metrics.CacheError, f.status, start)
	case res.fromCache:
		h.serveHit(w, r, res.entry, start)
	default:
		detail := ""
		if res.cacheErr {
			detail = "cache-unavailable"
		}
		h.serveFetched(w, r, res, missStatus(res.entry.Status, detail, res.stored, collapsed), metrics.CacheMiss, start)
	}
}

// serveNoStore answers a client that asked for Cache-Control: no-store: the
// cache is neither read nor written, so the call is not coalesced either
// (nothing it could share).
func (h *Handler) serveNoStore(w http.ResponseWriter, r *userRequest, k cache.Key, cred upstream.Credentials, start time.Time) {
	res := h.fetch(r.upstreamCtx(), k, cred)
	if res.err != nil {
		f := h.classify(res.err)
		w.Header().Set("Cache-Status", "userproxy; fwd=request"+fwdParams(f.fwdStatus, f.detail))
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		writeJSONError(w, f.status, f.msg)
		h.observe(metrics.CacheError, f.status, start)
		return
	}
	h.serveFetched(w, r, res, "userproxy; fwd=request"+fwdParams(res.entry.Status, ""), metrics.CacheBypass, start)
}

// serveFetched writes an answer the upstream has just given.
func (h *Handler) serveFetched(w http.ResponseWriter, r *userRequest, res *fillResult, cacheStatus, result string, start time.Time) {
	hdr := w.Header()
	for k, v := range res.header {
		hdr[k] = v
	}
	hdr.Set("Cache-Status", cacheStatus)
	hdr.Set("Age", "0")
	writeEntry(w, r, res.entry)
	h.observe(result, res.entry.Status, start)
}

// credentials returns the credentials for the upstream call and the scope
// they define. In inject mode the caller sends none and every caller shares
// the injected credentials' scope.
func (h *Handler) credentials(r *userRequest) (upstream.Credentials, string, error) {
	if h.inject != nil {
		return *h.inject, h.injectScope, nil
	}
	if r.nAuth > 1 {
		// Which one would the upstream use? Refuse rather than guess:
		// the scope must describe exactly the credentials sent on.
		return upstream.Credentials{}, "", errManyCredentials
	}
	if r.nAuth == 0 {
		return upstream.Credentials{}, "", errNoCredentials
	}
	if s, ok := h.scopeCache.get(r.auth); ok {
		return s.cred, s.scope, nil
	}
	cred, err := parseBasic(r.auth)
	if err != nil {
		return upstream.Credentials{}, "", err
	}
	s := &scoped{cred: cred, scope: h.scopes.scope(cred)}
	h.scopeCache.put(r.auth, s)
	return s.cred, s.scope, nil
}

// lookup reads the cache within the cache budget. A cache failure is
// counted and reported as a miss (err says so): the cache is an
// optimisation, never a dependency.
func (h *Handler) lookup(ctx context.Context, k cache.Key) (e cache.Entry, gen uint64, ok bool, err error) {
	if e, gen, ok := h.lookupLocal(k); ok {
		return e, gen, true, nil
	}
	return h.lookupStore(ctx, k)
}

// lookupLocal is lookup's first step: the in-process tier, if there is
// one. No I/O, so no deadline to set up.
func (h *Handler) lookupLocal(k cache.Key) (e cache.Entry, gen uint64, ok bool) {
	if h.local == nil {
		return cache.Entry{}, 0, false
	}
	if e, gen, ok := h.local.GetLocal(k); ok && !h.pending.has(k.ID) {
		return e, gen, true
	}
	return cache.Entry{}, 0, false
}

// lookupStore is lookup's second step: the store, within the cache budget.
func (h *Handler) lookupStore(ctx context.Context, k cache.Key) (e cache.Entry, gen uint64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.cacheTO)
	defer cancel()
	e, gen, ok, err = h.store.Get(ctx, k)
	if err != nil {
		h.m.CacheErrors.WithLabelValues(metrics.OpGet).Inc()
		h.log.Warn("cache read failed; treating as a miss", "id", k.ID, "err", err)
		return cache.Entry{}, 0, false, err
	}
	// Written while the cache was unreachable: this entry may predate the
	// write, whose invalidation has not been applied yet. (Checked before
	// retrying, which could apply it after this read.)
	if ok && h.pending.has(k.ID) {
		ok = false
	}
	h.retryPending()
	return e, gen, ok, nil
}

// fillResult is the outcome of one fill, shared by every request that
// waited on it. Its fields are read-only once the fill returns.
type fillResult struct {
	entry     cache.Entry // answer to serve: a cached entry or the upstream's answer
	header    map[string][]string
	ttl       time.Duration // fresh lifetime, if the answer is cacheable
	fromCache bool          // the re-check inside the fill found a fresh entry
	stored    bool          // entry was written to the cache
	cacheErr  bool          // the cache could not be read, so nothing was stored
	err       error         // no usable answer; classify decides the status
}

// fill returns the answer for k, making at most one upstream call per flight
// key at a time in this process. force skips answering from the cache.
// written is k's write epoch, read before the request's cache read: only
// requests that read the same one share a fill (writeEpochs). err is
// non-nil only when ctx ended before the fill did; the fill itself carries
// on for the other waiters and the cache.
//
// register, when this call leads the fill, registers it as k's miss fill
// while it runs (missFlights).
func (h *Handler) fill(ctx context.Context, k cache.Key, cred upstream.Credentials, force bool, written uint64, seen lookupResult, register bool) (res *fillResult, collapsed bool, err error) {
	var leader atomic.Bool
	run := func() (any, error) {
		leader.Store(true)
		if register {
			h.misses.add(k, written)
			defer h.misses.remove(k, written)
		}
		// Detached from the client that happens to lead: its leaving
		// must neither cancel the other waiters' answer nor count as an
		// upstream failure. Bounded by FillTimeout instead.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.fillTO)
		defer cancel()
		return h.doFill(fctx, k, cred, force, seen), nil
	}
	done := func(v any) (*fillResult, bool, error) {
		if !leader.Load() {
			h.m.Coalesced.Inc()
		}
		return v.(*fillResult), !leader.Load(), nil
	}
	if ctx.Done() == nil {
		// A request that cannot end early (the fasthttp front's) has no
		// reason to wait apart from the fill: the leader runs it on its
		// own goroutine, and a cold miss saves a goroutine start and a
		// hand-off back, each a wait in the run queue under load.
		v, _, _ := h.flights.Do(flightKey(k, force, written), run)
		return done(v)
	}
	ch := h.flights.DoChan(flightKey(k, force, written), run)
	select {
	case r := <-ch:
		return done(r.Val)
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// lookupResult is what a request's own lookup read, handed to its fill.
type lookupResult struct {
	gen   uint64 // the user's generation then
	done  bool   // a lookup was made (not for no-cache requests)
	err   bool   // it failed: the cache is unavailable
	epoch uint64 // without a tier, the key's fillEpochs count before it
}

// doFill runs inside the single flight for k.
func (h *Handler) doFill(ctx context.Context, k cache.Key, cred upstream.Credentials, force bool, seen lookupResult) *fillResult {
	// Re-check the cache inside the flight: a flight for this key that
	// finished between our lookup and this call has already stored the
	// answer, and must not cost a second upstream call. The generation the
	// store checks when we write must be read before the upstream call: an
	// invalidation in between then makes the write a no-op.
	//
	// With an in-process tier the re-check costs no I/O (a finished flight
	// stored into the tier too) and the request's own lookup, just made,
	// supplies the generation. Without one, the store is re-read only if a
	// fill for the key may have ended since that lookup (fillEpochs).
	defer h.ended.end(k)
	var gen uint64
	var cacheErr bool
	switch {
	case h.local != nil && seen.done:
		if e, _, ok := h.local.GetLocal(k); ok && !force && h.now().Before(e.Expires) && !h.pending.has(k.ID) {
			return &fillResult{entry: e, fromCache: true}
		}
		gen, cacheErr = seen.gen, seen.err
	case seen.done && h.ended.now(k) == seen.epoch:
		gen, cacheErr = seen.gen, seen.err
	default:
		e, g, ok, err := h.lookup(ctx, k)
		if ok && !force && h.now().Before(e.Expires) {
			return &fillResult{entry: e, fromCache: true}
		}
		gen, cacheErr = g, err != nil
	}

	res := h.fetch(ctx, k, cred)
	if res.err != nil || res.ttl == 0 {
		return res
	}
	res.cacheErr = cacheErr
	if !cacheErr {
		res.stored = h.store1(ctx, k, res.entry, h.retention(res.entry.Status, res.ttl), gen)
	}
	return res
}

// fetch calls the upstream and sorts its answer: data to store (ttl > 0),
// an answer to pass on unstored, or an error.
func (h *Handler) fetch(ctx context.Context, k cache.Key, cred upstream.Credentials) *fillResult {
	began := h.now()
	resp, err := h.upstream.Fetch(ctx, k.ID, cred)
	if err != nil {
		h.log.Warn("upstream fetch failed", "id", k.ID, "err", err)
		return &fillResult{err: err}
	}
	now := h.now()
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
		if !jsonValid(resp.Body) {
			h.log.Warn("upstream body is not JSON; not stored", "id", k.ID)
			return &fillResult{err: errInvalidJSON}
		}
		if h.redact != nil {
			body, err := redact(resp.Body, h.redact)
			if err != nil { // cannot happen for valid JSON; refuse rather than leak
				return &fillResult{err: errInvalidJSON}
			}
			entry.Body = body
		}
		ttl = h.jittered(h.ttl)
	case resp.Status == http.StatusNotFound:
		ttl = h.jittered(h.negTTL)
	case resp.Status == http.StatusTooManyRequests || resp.Status >= 500:
		return &fillResult{err: &upstreamStatusError{status: resp.Status, retryAfter: resp.Header.Get("Retry-After")}}
	default:
		// 401, 403 and anything else: the caller's own business, passed on
		// and never stored.
		return &fillResult{entry: entry, header: passHeaders(resp.Header)}
	}
	entry.Expires = now.Add(ttl)
	return &fillResult{entry: entry, ttl: ttl}
}

// store1 writes one entry within the cache budget and reports whether it was
// stored. A write refused because the user was invalidated meanwhile is the
// stale-set race working as designed, not a cache error.
func (h *Handler) store1(ctx context.Context, k cache.Key, e cache.Entry, ttl time.Duration, gen uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cacheTO)
	defer cancel()
	err := h.store.Set(ctx, k, e, ttl, gen)
	switch {
	case err == nil:
		return true
	case errors.Is(err, cache.ErrGenerationChanged):
		h.m.StaleSetRefused.Inc()
		return false
	default:
		h.m.CacheErrors.WithLabelValues(metrics.OpSet).Inc()
		h.log.Warn("cache write failed", "id", k.ID, "err", err)
		return false
	}
}

// passHeaders picks the upstream headers worth passing on with an
// uncacheable answer (a 401 must keep its challenge).
func passHeaders(h http.Header) map[string][]string {
	out := map[string][]string{}
	for _, k := range []string{"Www-Authenticate", "Retry-After"} {
		if v := h.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// observe records one answered request.
func (h *Handler) observe(result string, status int, start time.Time) {
	h.m.Requests.WithLabelValues(result, metrics.Code(status)).Inc()
	h.m.RequestDuration.WithLabelValues(result).Observe(h.now().Sub(start).Seconds())
}
