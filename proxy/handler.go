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

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough"
)

// Options configures a Handler. Zero values are documented defaults, filled
// in once by New.
type Options struct {
	// Engine answers cached reads. Required; its owner closes it.
	Engine *readthrough.Engine
	// ValidID reports whether a user id is acceptable; ids it accepts are
	// used as they are sent. Nil means the default rule: ids are numbers,
	// ^[0-9]{1,20}$, used without leading zeros (id.go).
	ValidID func(id string) bool
	// IgnoreClientCacheControl, when true, ignores the client's
	// Cache-Control no-cache / no-store. False honours them.
	IgnoreClientCacheControl bool
	// PassthroughURL is where requests other than cached reads go, writes
	// included (the upstream base URL). Nil disables pass-through: such
	// requests get 404.
	PassthroughURL *url.URL
	// PassthroughTransport carries pass-through requests: the upstream
	// client's (upstream.Client.Transport), so in inject mode the
	// configured credentials replace the caller's. Nil means a clone of
	// http.DefaultTransport that waits for response headers as long as the
	// engine's FillTimeout.
	PassthroughTransport http.RoundTripper
	// Metrics records requests. Nil means metrics on a private registry
	// nobody scrapes.
	Metrics *metrics.Metrics
	// Logger receives warnings about pass-through failures. Nil discards
	// them. Credentials are never logged.
	Logger *slog.Logger
}

// Handler serves the proxy listener: GET|HEAD /api/users/{id} through the
// engine, writes to /api/users/{id} with invalidation, everything else
// passed through. It is the net/http front; Front is the fasthttp one.
type Handler struct {
	eng         *readthrough.Engine
	validID     func(string) bool
	numericIDs  bool // the default rule: ids are made canonical
	honorCC     bool
	passthrough *httputil.ReverseProxy // nil when disabled
	replayed    replayedFields         // stored header fields as net/http takes them
	m           *metrics.Metrics
	log         *slog.Logger
	now         func() time.Time // the engine's clock
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Engine == nil {
		return nil, errors.New("proxy: Engine is required")
	}
	h := &Handler{
		eng:     opts.Engine,
		validID: opts.ValidID,
		honorCC: !opts.IgnoreClientCacheControl,
		m:       opts.Metrics,
		log:     opts.Logger,
		now:     opts.Engine.Now, // one clock: a request's start is also the engine's
	}
	if h.validID == nil {
		h.validID, h.numericIDs = numericID, true
	}
	if h.m == nil {
		h.m = metrics.New(prometheus.NewRegistry())
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.PassthroughURL != nil {
		h.passthrough = h.newPassthrough(opts.PassthroughURL, opts.PassthroughTransport)
	}
	return h, nil
}

// Close releases the pass-through's idle connections. Call it after the
// servers using h have shut down.
func (h *Handler) Close() {
	if h.passthrough != nil {
		if t, ok := h.passthrough.Transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
}

const usersPrefix = "/api/users/"

// checkID validates the raw (still escaped) id segment and returns the id
// in the spelling the cache and the upstream use. The default rule admits
// no '%', so escapes never reach it undecoded.
func (h *Handler) checkID(raw string) (string, bool) {
	id, err := url.PathUnescape(raw)
	if err != nil || strings.Contains(raw, "/") || id == "." || id == ".." || !h.validID(id) {
		return "", false
	}
	if h.numericIDs {
		id = canonicalID(id)
	}
	return id, true
}

// observe records one answered request.
func (h *Handler) observe(result string, status int, start time.Time) {
	h.m.Requests.WithLabelValues(result, metrics.Code(status)).Inc()
	h.m.RequestDuration.WithLabelValues(result).Observe(h.now().Sub(start).Seconds())
}
