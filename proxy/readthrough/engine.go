package readthrough

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough/coalesce"
	"github.com/userproxy/userproxy/upstream"
)

// Store is what the engine needs of a cache. A miss is ok == false, not an
// error; gen is the user's generation at read time, handed back to Set so a
// fill that raced an invalidation is refused (cache.ErrGenerationChanged).
// A Store keeps nothing of a call's ctx once the call returns: the engine
// reuses the context of its shared reads (see budget).
type Store interface {
	Get(ctx context.Context, k cache.Key) (e cache.Entry, gen uint64, ok bool, err error)
	Set(ctx context.Context, k cache.Key, e cache.Entry, ttl time.Duration, gen uint64) error
	Invalidate(ctx context.Context, id string) error
}

// LocalGetter is a Store that can answer some lookups from process memory,
// without I/O: the engine asks it first, without setting up a deadline.
type LocalGetter interface {
	GetLocal(k cache.Key) (e cache.Entry, gen uint64, ok bool)
}

// AllInvalidator is a Store that can drop every entry at once.
type AllInvalidator interface {
	InvalidateAll(ctx context.Context) error
}

// Upstream is what the engine needs of the upstream API client.
type Upstream interface {
	// Fetch returns the upstream's answer for user id, or an error when
	// there was none (transport failure, timeout, oversized body, open
	// breaker: errors.Is(err, upstream.ErrBreakerOpen)).
	Fetch(ctx context.Context, id string, cred upstream.Credentials) (*upstream.Response, error)
	// RetryAfter says how long until an open breaker lets a call through,
	// rounded up to whole seconds, at least one.
	RetryAfter() time.Duration
}

// Options configures an Engine. Zero values are documented defaults,
// filled in once by New.
type Options struct {
	// Store is the cache. Required.
	Store Store
	// Upstream fetches users on a miss. Required.
	Upstream Upstream
	// KeySecret keys the HMAC that turns credentials into cache scopes.
	// Required; replicas sharing a Redis must share it.
	KeySecret []byte
	// Inject, if non-nil, puts the engine in inject mode: callers need no
	// credentials, every call uses these, and all callers share one scope.
	// Nil means passthrough mode: each caller's Basic credentials are
	// required, forwarded, and define the caller's scope.
	Inject *upstream.Credentials
	// TTL is the fresh lifetime of a 200. Default 60s.
	TTL time.Duration
	// NegativeTTL is the lifetime of a cached 404. Default 10s.
	NegativeTTL time.Duration
	// StaleWhileRevalidate is how long past its fresh lifetime a 200 is
	// still served at once while one background refresh runs. Zero
	// disables it.
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long past its fresh lifetime a 200 may be served
	// when the upstream fails or the breaker is open. Zero disables it. A
	// 404 is never served past its lifetime.
	StaleIfError time.Duration
	// TTLJitter shortens each stored lifetime by a random fraction in
	// [0, TTLJitter), so entries filled together do not expire together.
	// Lifetimes are only ever shortened. Zero disables it; capped at 0.99.
	TTLJitter float64
	// EarlyRefreshBeta tunes probabilistic early refresh (XFetch): a hit
	// refreshes in the background before expiry with a probability that
	// grows as expiry nears and with how long the upstream call took.
	// 1 is the standard setting, above 1 refreshes earlier. Zero disables it.
	EarlyRefreshBeta float64
	// RedactFields names JSON object members removed, at any depth, from
	// user bodies before they are stored or served (for example
	// registration_password). Nil or empty keeps bodies byte-identical.
	RedactFields []string
	// DropHeaders names upstream response header fields that are neither
	// stored nor replayed, on top of those never replayed (hop-by-hop
	// fields, Set-Cookie, and those the proxy sets itself: see
	// replayable). Nil drops no more.
	DropHeaders []string
	// Rand returns a uniform random number in [0, 1) for jitter and early
	// refresh. Nil means math/rand/v2.Float64; tests inject a sequence.
	Rand func() float64
	// CacheTimeout bounds each cache operation, so a slow cache costs at
	// most this much per request before the engine fails open. Default 50ms.
	CacheTimeout time.Duration
	// FillTimeout bounds one fill (re-check, upstream call, store), which
	// runs detached from the client that started it. Default 5s; keep it
	// above the upstream timeout.
	FillTimeout time.Duration
	// PurgeTimeout bounds a retried purge of everything, which walks the
	// whole keyspace: far longer than one cache operation. Default 2m.
	PurgeTimeout time.Duration
	// Leases, if non-nil, shares fills with the other replicas of the
	// fleet: an ordinary miss takes the key's lease before calling the
	// upstream, or waits for the replica that holds it (lease.go). Nil:
	// one upstream call per key per replica.
	Leases Leases
	// LeaseTTL bounds a lease, and so how long waiters wait for a holder
	// that died: keep it just above the upstream timeout plus two cache
	// operations. Default FillTimeout.
	LeaseTTL time.Duration
	// LeasePoll is how often a waiter asks Redis whether the lease is
	// still held, in case an announcement is lost. Default 100ms.
	LeasePoll time.Duration
	// Metrics records what the engine does. Nil means metrics on a private
	// registry nobody scrapes.
	Metrics *metrics.Metrics
	// Logger receives warnings about upstream and cache failures. Nil
	// discards them. Credentials are never logged.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Engine is the read-through engine. Its methods are safe for concurrent
// use. Call Close when done.
type Engine struct {
	store       Store
	local       LocalGetter // store's in-process tier; nil if it has none
	upstream    Upstream
	scopes      *scoper
	scopeCache  scopeCache
	inject      *upstream.Credentials
	injectScope string
	ttl         time.Duration
	negTTL      time.Duration
	swr         time.Duration
	staleErr    time.Duration
	jitter      float64
	beta        float64
	redact      map[string]bool // nil: bodies pass untouched
	drop        map[string]bool // extra header fields never replayed
	rand        func() float64
	cacheTO     time.Duration
	fillTO      time.Duration
	purgeTO     time.Duration
	leases      Leases // nil: no fleet-wide fills
	leaseTTL    time.Duration
	leasePoll   time.Duration
	m           *metrics.Metrics
	log         *slog.Logger
	now         func() time.Time

	// Coalescing: see fill.go and lookup.go for how they fit together.
	flights coalesce.Group[string, *fillResult] // fills in flight, by flightKey
	misses  coalesce.Set[keyEpoch]              // the ordinary miss fills among them
	ended   coalesce.Epochs                     // fills ended, per group of keys
	written coalesce.Epochs                     // invalidations completed, per group of ids
	// writtenAll counts the purges of everything begun; it moves every
	// id's write epoch (writtenNow).
	writtenAll atomic.Uint64
	reads      coalesce.Reads[keyEpoch, storeRead] // store reads in flight

	refreshing sync.Map             // flight keys with a background refresh running
	pending    pendingInvalidations // invalidations to retry once the cache answers

	// Background work (refreshes, invalidation retries) belongs to the
	// engine: it ends when closing is closed, and background counts it so
	// that Close can wait for it.
	lifeMu     sync.Mutex    // protects closed, and orders background.Add before Close's Wait
	closed     bool          // Close has begun
	closing    chan struct{} // closed by Close
	background sync.WaitGroup
	storing    inflight // stores of fills that have answered (spawn)
}

// New returns an Engine for opts.
func New(opts Options) (*Engine, error) {
	if opts.Store == nil || opts.Upstream == nil {
		return nil, errors.New("readthrough: Store and Upstream are required")
	}
	if len(opts.KeySecret) == 0 {
		return nil, errors.New("readthrough: KeySecret is required")
	}
	e := &Engine{
		store:     opts.Store,
		upstream:  opts.Upstream,
		scopes:    newScoper(opts.KeySecret),
		inject:    opts.Inject,
		ttl:       orDefault(opts.TTL, 60*time.Second),
		negTTL:    orDefault(opts.NegativeTTL, 10*time.Second),
		swr:       max(opts.StaleWhileRevalidate, 0),
		staleErr:  max(opts.StaleIfError, 0),
		jitter:    min(max(opts.TTLJitter, 0), 0.99),
		beta:      max(opts.EarlyRefreshBeta, 0),
		rand:      opts.Rand,
		cacheTO:   orDefault(opts.CacheTimeout, 50*time.Millisecond),
		fillTO:    orDefault(opts.FillTimeout, 5*time.Second),
		purgeTO:   orDefault(opts.PurgeTimeout, 2*time.Minute),
		leases:    opts.Leases,
		leasePoll: orDefault(opts.LeasePoll, 100*time.Millisecond),
		m:         opts.Metrics,
		log:       opts.Logger,
		now:       opts.Now,
		closing:   make(chan struct{}),
	}
	e.leaseTTL = orDefault(opts.LeaseTTL, e.fillTO)
	e.local, _ = opts.Store.(LocalGetter)
	if e.m == nil {
		e.m = metrics.New(prometheus.NewRegistry())
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.rand == nil {
		e.rand = rand.Float64
	}
	for _, f := range opts.RedactFields {
		if e.redact == nil {
			e.redact = map[string]bool{}
		}
		e.redact[f] = true
	}
	for _, f := range opts.DropHeaders {
		if e.drop == nil {
			e.drop = map[string]bool{}
		}
		e.drop[textproto.CanonicalMIMEHeaderKey(f)] = true
	}
	if e.inject != nil {
		e.injectScope = e.scopes.scope(*e.inject)
	}
	return e, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Now reads the engine's clock (Options.Now).
func (e *Engine) Now() time.Time { return e.now() }

// FillTimeout is how long one fill may take: the bound on any upstream
// call the engine makes.
func (e *Engine) FillTimeout() time.Duration { return e.fillTO }

// Close ends background work (refreshes, invalidation retries) and waits
// for it to stop. Call it after the servers using e have shut down; e must
// not be used afterwards. It is safe to call more than once.
func (e *Engine) Close() {
	e.lifeMu.Lock()
	if !e.closed {
		e.closed = true
		close(e.closing)
	}
	e.lifeMu.Unlock()
	e.storing.wait()
	e.background.Wait()
}

// goBackground runs fn on a goroutine of its own, with a context that has
// ctx's values (the request id a refresh forwards) but none of its
// cancellation, bounded by d and ended by Close. It reports false, running
// nothing, once Close has begun.
func (e *Engine) goBackground(ctx context.Context, d time.Duration, fn func(ctx context.Context)) bool {
	e.lifeMu.Lock()
	if e.closed {
		e.lifeMu.Unlock()
		return false
	}
	e.background.Add(1)
	e.lifeMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	go func() {
		defer e.background.Done()
		defer cancel()
		go func() { // the work ends with Close, or when it is done
			select {
			case <-e.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		fn(ctx)
	}()
	return true
}
