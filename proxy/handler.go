package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
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
	upstream    Upstream
	scopes      *scoper
	inject      *upstream.Credentials
	injectScope string
	ttl         time.Duration
	negTTL      time.Duration
	cacheTO     time.Duration
	fillTO      time.Duration
	validID     func(string) bool
	passthrough *httputil.ReverseProxy // nil when disabled
	m           *metrics.Metrics
	log         *slog.Logger
	now         func() time.Time

	flights singleflight.Group // fills in progress, keyed by id NUL scope
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
		cacheTO:  orDefault(opts.CacheTimeout, 50*time.Millisecond),
		fillTO:   orDefault(opts.FillTimeout, 5*time.Second),
		validID:  opts.ValidID,
		m:        opts.Metrics,
		log:      opts.Logger,
		now:      opts.Now,
	}
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
			h.serveUser(w, r, rest)
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
	if err != nil || strings.Contains(raw, "/") || !h.validID(id) {
		writeJSONError(w, http.StatusBadRequest, "invalid user id")
		return "", false
	}
	return id, true
}
