package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// Options configures a Handler. Zero values are documented defaults, filled
// in once by New.
type Options struct {
	// Store is the cache. Required.
	Store Store
	// Upstream fetches users on a miss. Required.
	Upstream Upstream
	// KeySecret keys the HMAC that turns credentials into cache scopes.
	// Required; replicas sharing a Redis must share it.
	KeySecret []byte
	// Inject, if non-nil, puts the proxy in inject mode: callers need no
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
	// Lifetimes are only ever shortened: no entry is fresher than TTL says.
	// Zero disables it; must be below 1.
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
	// IgnoreClientCacheControl, when true, makes the proxy ignore the
	// client's Cache-Control no-cache / no-store. False honours them.
	IgnoreClientCacheControl bool
	// Rand returns a uniform random number in [0, 1) for jitter and early
	// refresh. Nil means math/rand/v2.Float64; tests inject a sequence.
	Rand func() float64
	// CacheTimeout bounds each cache operation, so a slow cache costs at
	// most this much per request before the proxy fails open. Default 50ms.
	CacheTimeout time.Duration
	// FillTimeout bounds one fill (re-check, upstream call, store), which
	// runs detached from the client that started it. Default 5s; keep it
	// above the upstream timeout.
	FillTimeout time.Duration
	// ValidID reports whether a user id is acceptable. Nil means the
	// default rule ^[A-Za-z0-9_-]{1,64}$.
	ValidID func(id string) bool
	// PassthroughURL is where requests other than cached reads and user
	// writes go (the upstream base URL). Nil disables pass-through: such
	// requests get 404.
	PassthroughURL *url.URL
	// PassthroughTransport carries pass-through requests. Nil means a clone
	// of http.DefaultTransport with a response-header timeout of FillTimeout.
	PassthroughTransport http.RoundTripper
	// Metrics records what the handler does. Nil means metrics on a
	// private registry nobody scrapes.
	Metrics *metrics.Metrics
	// Logger receives warnings about upstream and cache failures. Nil
	// discards them. Credentials are never logged.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Handler serves the proxy listener: GET|HEAD /api/users/{id} through the
// cache, writes to /api/users/{id} with invalidation, everything else passed
// through.
type Handler struct {
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
	honorCC     bool
	redact      map[string]bool // nil: bodies pass untouched
	rand        func() float64
	cacheTO     time.Duration
	fillTO      time.Duration
	validID     func(string) bool
	passthrough *httputil.ReverseProxy // nil when disabled
	m           *metrics.Metrics
	log         *slog.Logger
	now         func() time.Time

	flights singleflight.Group // fills in progress, keyed by flightKey
	misses  missFlights        // the ordinary miss fills among them
	ended   fillEpochs         // fills ended, per group of keys
	written writeEpochs        // invalidations completed, per group of ids
	reads   sharedReads        // store reads in flight

	// Background refreshes belong to the handler: bg cancels them on
	// Close, and refreshes waits for them.
	bg         context.Context
	stopBG     context.CancelFunc
	refreshes  sync.WaitGroup
	refreshing sync.Map // flight keys with a background refresh running

	pending pendingInvalidations // invalidations to retry once the cache answers
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil || opts.Upstream == nil {
		return nil, errors.New("proxy: Store and Upstream are required")
	}
	if len(opts.KeySecret) == 0 {
		return nil, errors.New("proxy: KeySecret is required")
	}
	h := &Handler{
		store:    opts.Store,
		upstream: opts.Upstream,
		scopes:   newScoper(opts.KeySecret),
		inject:   opts.Inject,
		ttl:      orDefault(opts.TTL, 60*time.Second),
		negTTL:   orDefault(opts.NegativeTTL, 10*time.Second),
		swr:      max(opts.StaleWhileRevalidate, 0),
		staleErr: max(opts.StaleIfError, 0),
		jitter:   min(max(opts.TTLJitter, 0), 0.99),
		beta:     max(opts.EarlyRefreshBeta, 0),
		honorCC:  !opts.IgnoreClientCacheControl,
		rand:     opts.Rand,
		cacheTO:  orDefault(opts.CacheTimeout, 50*time.Millisecond),
		fillTO:   orDefault(opts.FillTimeout, 5*time.Second),
		validID:  opts.ValidID,
		m:        opts.Metrics,
		log:      opts.Logger,
		now:      opts.Now,
	}
	h.local, _ = opts.Store.(LocalGetter)
	if h.validID == nil {
		h.validID = validID
	}
	if h.m == nil {
		h.m = metrics.New(prometheus.NewRegistry())
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.now == nil {
		h.now = time.Now
	}
	for _, f := range opts.RedactFields {
		if h.redact == nil {
			h.redact = map[string]bool{}
		}
		h.redact[f] = true
	}
	if h.rand == nil {
		h.rand = rand.Float64
	}
	h.bg, h.stopBG = context.WithCancel(context.Background())
	if h.inject != nil {
		h.injectScope = h.scopes.scope(*h.inject)
	}
	if opts.PassthroughURL != nil {
		h.passthrough = h.newPassthrough(opts.PassthroughURL, opts.PassthroughTransport)
	}
	return h, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

const usersPrefix = "/api/users/"

// ServeHTTP routes a request. The id is taken from the escaped path, so an
// encoded slash or NUL is seen (and refused) rather than decoded into a
// different path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rawPath := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(rawPath, usersPrefix); ok {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			u := h.httpUserRequest(r)
			h.serveUser(w, &u, rest)
			return
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			h.serveWrite(w, r, rest)
			return
		}
	}
	h.serveBypass(w, r)
}

// checkID validates the raw (still escaped) id segment. The default rule
// admits no '%', so escapes never reach a custom rule undecoded.
func (h *Handler) checkID(w http.ResponseWriter, raw string) (string, bool) {
	id, err := url.PathUnescape(raw)
	if err != nil || strings.Contains(raw, "/") || id == "." || id == ".." || !h.validID(id) {
		w.Header().Set("Cache-Status", statusInvalidID)
		writeJSONError(w, http.StatusBadRequest, "invalid user id")
		return "", false
	}
	return id, true
}
