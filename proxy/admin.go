package proxy

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminOptions configures an Admin handler. Zero values are documented
// defaults.
type AdminOptions struct {
	// Gatherer is scraped at /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ping checks the cache for /readyz. Nil means the cache is in-process
	// and always available.
	Ping func(ctx context.Context) error
	// PingTimeout bounds Ping. Default 250ms.
	PingTimeout time.Duration
	// Breaker reports the upstream breaker state ("closed", "half-open",
	// "open") for /readyz. Nil leaves it out.
	Breaker func() string
	// Purge serves /admin/cache and below (see Handler.Purge). Nil leaves
	// those paths unserved (404).
	Purge http.Handler
}

// Admin serves the admin listener: /metrics, /healthz, /readyz, and the
// purge endpoints.
type Admin struct {
	mux      *http.ServeMux
	ping     func(ctx context.Context) error
	pingTO   time.Duration
	breaker  func() string
	draining atomic.Bool
}

// NewAdmin returns an Admin for opts.
func NewAdmin(opts AdminOptions) *Admin {
	a := &Admin{ping: opts.Ping, pingTO: cmp.Or(opts.PingTimeout, 250*time.Millisecond), breaker: opts.Breaker}
	a.mux = http.NewServeMux()
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)
	if opts.Purge != nil {
		a.mux.Handle("/admin/cache", opts.Purge)
		a.mux.Handle("/admin/cache/", opts.Purge)
	}
	return a
}

// SetDraining marks the process as shutting down: /readyz answers 503 from
// now on, so load balancers stop sending new requests.
func (a *Admin) SetDraining() { a.draining.Store(true) }

// ServeHTTP implements http.Handler.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// readiness is the /readyz body.
type readiness struct {
	Status  string `json:"status"`            // ok, degraded, draining
	Cache   string `json:"cache"`             // ok, or why it is unavailable
	Breaker string `json:"breaker,omitempty"` // upstream breaker state
}

// readyz is ready unless draining. A cache that does not answer makes it
// "degraded" but still ready: the proxy fails open to the upstream, and
// taking every replica out of rotation because Redis is down would turn a
// slower service into no service.
func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	rd := readiness{Status: "ok", Cache: "ok"}
	if a.ping != nil {
		ctx, cancel := context.WithTimeout(r.Context(), a.pingTO)
		if err := a.ping(ctx); err != nil {
			rd.Status, rd.Cache = "degraded", "unavailable: "+err.Error()
		}
		cancel()
	}
	if a.breaker != nil {
		rd.Breaker = a.breaker()
	}
	code := http.StatusOK
	if a.draining.Load() {
		rd.Status, code = "draining", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(rd)
}
