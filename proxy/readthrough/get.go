package readthrough

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// Get answers r: from the cache when it holds a usable answer, else from
// one fill shared by every request for the same key. ctx is the request's:
// when it ends, Get stops waiting for a fill that others share (Status 499),
// while the fill itself goes on for them and the cache.
func (e *Engine) Get(ctx context.Context, r Request) (o Outcome) {
	start := r.Received
	if start.IsZero() {
		start = e.now()
	}
	cred, scope, err := e.credentials(&r)
	if err != nil {
		return Outcome{Status: http.StatusUnauthorized, Err: err.Error(), Challenge: true,
			Kind: KindRefused, Detail: "bad-credentials", Result: metrics.CacheError}
	}
	k := cache.Key{ID: r.ID, Scope: scope}
	switch {
	case r.Directives.NoStore:
		o = e.getNoStore(ctx, &r, k, cred)
	case r.Directives.NoCache:
		o = e.getMiss(ctx, &r, k, cred, &lookup{written: e.writtenNow(k.ID)}, start)
	default:
		e.getCached(ctx, &r, k, cred, start, &o)
	}
	if r.IfNoneMatch != "" && o.Status == http.StatusOK && o.Err == "" && etagMatches(r.IfNoneMatch, o.Header) {
		o.Status, o.Body = http.StatusNotModified, nil
	}
	return o
}

// lookup is what a request's look at the cache found, for the miss that
// follows it.
type lookup struct {
	written   uint64       // the key's write epoch, read before the store read (coalesce.Epochs)
	seen      lookupResult // what the store read found; zero when none was made
	joined    bool         // waits on a miss fill in flight, without a read of its own
	stale     cache.Entry  // an expired 200 that may stand in if the upstream fails
	haveStale bool
}

// getCached answers from the cache if it can, and otherwise from a fill.
// It fills o in place: on the hit path, the Outcome is not copied from
// function to function on its way out (a measurable share of a hit).
func (e *Engine) getCached(ctx context.Context, r *Request, k cache.Key, cred upstream.Credentials, start time.Time, o *Outcome) {
	// The in-process tier first: a tier hit never looks at the fills in
	// progress, and needs no write epoch.
	en, gen, ok := e.lookupLocal(k)
	l := lookup{seen: lookupResult{gen: gen, done: true}}
	tierHit := ok
	if !tierHit {
		// From here the store may keep k (the tier keeps what it reads
		// from Redis): it must own its id, which r may only alias.
		k.ID = strings.Clone(k.ID)
		l.written = e.writtenNow(k.ID)
		if e.misses.Has(keyEpoch{k, l.written}) {
			// A miss fill for this key is running: its answer is the next
			// one the cache will have. Wait for it. seen stays unset:
			// should that fill end first, the one this request then leads
			// re-reads the cache before calling the upstream.
			*o = e.getMiss(ctx, r, k, cred, &lookup{written: l.written, joined: true}, start)
			return
		}
		var err error
		var epoch uint64
		en, gen, ok, epoch, err = e.read(k, l.written)
		l.seen = lookupResult{gen: gen, done: true, err: err != nil, epoch: epoch}
	}
	if ok {
		switch {
		case start.Before(en.Expires):
			if e.refreshEarly(en, start) {
				e.m.EarlyRefreshes.Inc()
				e.refreshInBackground(ctx, r, k, cred, true, l.seen)
			}
			o.setHit(en, start)
			return
		case en.Status == http.StatusOK && start.Before(en.Expires.Add(e.swr)):
			e.refreshInBackground(ctx, r, k, cred, false, l.seen)
			*o = e.stale(en, start, metrics.StaleRevalidate, 0, "stale-while-revalidate")
			return
		case en.Status == http.StatusOK && start.Before(en.Expires.Add(e.staleErr)):
			l.stale, l.haveStale = en, true
		}
	}
	if tierHit {
		l.written = e.writtenNow(k.ID)
	}
	*o = e.getMiss(ctx, r, k, cred, &l, start)
}

// getMiss answers from a fill of k, or from l's stale copy if the fill
// fails.
func (e *Engine) getMiss(ctx context.Context, r *Request, k cache.Key, cred upstream.Credentials, l *lookup, start time.Time) Outcome {
	k.ID = strings.Clone(k.ID) // a fill stores it and may outlive r (Request)
	force := r.Directives.NoCache
	res, collapsed, err := e.fill(ctx, r, k, cred, force, l.written, l.seen, !force)
	if err != nil {
		// The client went away while waiting on a fill that goes on
		// without it. Nobody reads an answer; 499 says so in metrics.
		return Outcome{Status: 499, Kind: KindMiss, Result: metrics.CacheMiss}
	}
	if res.err != nil && l.joined {
		// The fill failed: look for a stand-in only now, with this
		// request's own read. What the fill's leader read may predate a
		// write that completed before this request was sent.
		if en, _, ok, err := e.lookup(ctx, k); err == nil && ok {
			switch {
			case start.Before(en.Expires): // stored meanwhile (another replica)
				return hit(en, start)
			case en.Status == http.StatusOK && start.Before(en.Expires.Add(e.staleErr)):
				l.stale, l.haveStale = en, true
			}
		}
	}
	switch {
	case res.err != nil:
		f := e.classify(res.err)
		if l.haveStale {
			reason := metrics.StaleError
			if f.detail == "breaker-open" {
				reason = metrics.StaleBreakerOpen
			}
			return e.stale(l.stale, start, reason, f.fwdStatus, f.detail)
		}
		o := f.outcome(KindMiss)
		o.Collapsed = collapsed || res.fleet
		return o
	case res.fromCache:
		return hit(res.entry, start)
	default:
		o := fetched(res, KindMiss, metrics.CacheMiss)
		o.Stored, o.Collapsed = res.stored, collapsed || res.fleet
		if res.cacheErr {
			o.Detail = "cache-unavailable"
		}
		return o
	}
}

// getNoStore answers a client that asked for Cache-Control: no-store: the
// cache is neither read nor written, so the call is not coalesced either
// (nothing it could share).
func (e *Engine) getNoStore(ctx context.Context, r *Request, k cache.Key, cred upstream.Credentials) Outcome {
	k.ID = strings.Clone(k.ID) // logged after r's buffers may be reused (Request)
	res := e.fetch(forwardContext(ctx, r), k, cred)
	if res.err != nil {
		return e.classify(res.err).outcome(KindRequest)
	}
	return fetched(res, KindRequest, metrics.CacheBypass)
}

// hit is the outcome of serving a fresh stored entry.
func hit(en cache.Entry, start time.Time) (o Outcome) {
	o.setHit(en, start)
	return o
}

// setHit makes o (a zero Outcome) the outcome of serving a fresh entry.
func (o *Outcome) setHit(en cache.Entry, start time.Time) {
	o.Status, o.Body, o.ContentType, o.Header = en.Status, en.Body, en.ContentType, en.Header
	o.Kind, o.TTL, o.Age, o.Result = KindHit, seconds(en.Expires.Sub(start)), seconds(start.Sub(en.Stored)), metrics.CacheHit
	if en.Status == http.StatusNotFound {
		o.Detail, o.Result = "negative", metrics.CacheNegative
	}
}

// stale is the outcome of serving an expired entry on purpose; reason labels
// the metric, fwdStatus and detail say why.
func (e *Engine) stale(en cache.Entry, start time.Time, reason string, fwdStatus int, detail string) Outcome {
	e.m.StaleServed.WithLabelValues(reason).Inc()
	return Outcome{
		Status: en.Status, Body: en.Body, ContentType: en.ContentType, Header: en.Header,
		Kind: KindStale, TTL: -seconds(start.Sub(en.Expires)), Age: seconds(start.Sub(en.Stored)),
		FwdStatus: fwdStatus, Detail: detail, Result: metrics.CacheStale,
	}
}

// fetched is the outcome of an answer the upstream has just given.
func fetched(res *fillResult, kind Kind, result string) Outcome {
	return Outcome{
		Status: res.entry.Status, Body: res.entry.Body, ContentType: res.entry.ContentType, Header: res.entry.Header,
		Kind: kind, FwdStatus: res.entry.Status, Result: result,
	}
}

// seconds is d in whole seconds, never negative (RFC 9111 Age and the ttl
// parameter are non-negative integers).
func seconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// forwardContext is ctx carrying r's request id and trace context to the
// upstream call. They are copied: r's strings may alias a request buffer
// that is reused once the request is answered, while a fill may outlive it.
func forwardContext(ctx context.Context, r *Request) context.Context {
	if r.Forward == (upstream.Forward{}) {
		return ctx
	}
	return upstream.WithForward(ctx, &upstream.Forward{
		RequestID:   strings.Clone(r.Forward.RequestID),
		Traceparent: strings.Clone(r.Forward.Traceparent),
		Tracestate:  strings.Clone(r.Forward.Tracestate),
	})
}
