// Package metrics builds every Prometheus collector userproxy exports.
//
// Collectors are registered on a Registerer the caller injects (never the
// default registry), so two proxies, or two parallel tests, can coexist in one
// process. The metric names are part of the operator contract in DESIGN.md:
// dashboards and alerts depend on them.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Cache results: the closed set of values of the "cache" label.
const (
	CacheHit      = "hit"      // fresh entry served from the cache
	CacheStale    = "stale"    // expired entry served on purpose (upstream failing)
	CacheMiss     = "miss"     // answered by the upstream (the fill, or a coalesced wait on it)
	CacheNegative = "negative" // cached 404 served
	CacheBypass   = "bypass"   // not cacheable: passed through to the upstream
	CacheError    = "error"    // the proxy answered with an error of its own
)

// Cache operations: the closed set of values of the "op" label.
const (
	OpGet        = "get"
	OpSet        = "set"
	OpInvalidate = "invalidate"
	OpDecode     = "decode"
)

// Reasons an expired entry is served: the closed set of values of the
// "reason" label of userproxy_stale_served_total.
const (
	StaleRevalidate  = "revalidate"   // within -stale-while-revalidate, refreshing in the background
	StaleError       = "error"        // the upstream failed; within -stale-ttl
	StaleBreakerOpen = "breaker_open" // the breaker is open; within -stale-ttl
)

// Fill lease results: the closed set of values of the "result" label of
// userproxy_fill_leases_total.
const (
	LeaseWon      = "won"      // this replica took the key's lease and filled it
	LeaseWaited   = "waited"   // another replica held the lease; answered from its fill
	LeaseExpired  = "expired"  // the holder's lease ran out with no answer; this replica took over
	LeaseFallback = "fallback" // Redis could not be asked in time: local coalescing only
)

// Breaker state values of userproxy_circuit_breaker_state, as in DESIGN.md.
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// Metrics holds every collector. The zero value is not usable; build one with New.
type Metrics struct {
	// Requests counts answered proxy requests by cache result and status code.
	Requests *prometheus.CounterVec
	// RequestDuration observes the time to answer, by cache result.
	RequestDuration *prometheus.HistogramVec
	// UpstreamRequests counts upstream calls by status code ("error" when
	// no HTTP answer came back).
	UpstreamRequests *prometheus.CounterVec
	// UpstreamDuration observes the time of each upstream call.
	UpstreamDuration prometheus.Histogram
	// BreakerState is 0 closed, 1 half-open, 2 open, per breaker.
	BreakerState *prometheus.GaugeVec
	// CacheErrors counts failed cache operations by op.
	CacheErrors *prometheus.CounterVec
	// Coalesced counts requests that waited on another request's fill
	// instead of calling the upstream themselves.
	Coalesced prometheus.Counter
	// SharedReads counts requests that waited on another request's cache
	// read of the same key instead of making their own.
	SharedReads prometheus.Counter
	// Invalidations counts invalidations by source: "write" (a user
	// written through the proxy), "create" (a user created through the
	// proxy: its cached 404 dropped), "roles" (a role changed through the
	// proxy: everything dropped), "admin" (one user purged), "admin_all"
	// (everything purged), "retry" (one that failed while the cache was
	// unreachable, applied once it answered again).
	Invalidations *prometheus.CounterVec
	// StaleServed counts expired entries served on purpose, by reason:
	// "revalidate" (stale-while-revalidate), "error" (the upstream failed),
	// "breaker_open".
	StaleServed *prometheus.CounterVec
	// BackgroundRefreshes counts refreshes run off the request path, by
	// result: "stored", "not_stored" (answered but not cacheable or
	// refused), "error".
	BackgroundRefreshes *prometheus.CounterVec
	// EarlyRefreshes counts refreshes started before expiry (XFetch).
	EarlyRefreshes prometheus.Counter
	// StaleSetRefused counts fills whose write was refused because the
	// user was invalidated while they were in flight.
	StaleSetRefused prometheus.Counter
	// FillLeases counts fleet-wide fill leases by result (LeaseWon,
	// LeaseWaited, LeaseExpired, LeaseFallback): how replicas sharing a
	// Redis share one upstream call per cold key.
	FillLeases *prometheus.CounterVec
	// FleetBreakerReports is how many distinct replicas had announced an
	// open upstream breaker, within the open period, when this replica
	// last looked. The "fleet" series of BreakerState says whether this
	// replica honours them.
	FleetBreakerReports prometheus.Gauge
	// TopologyReloads counts reloads of the Redis topology (the Cluster
	// slot map, the Sentinel's master) by reason: "error" (a connection
	// error to a node), "moved" (Redis redirected a command), "periodic",
	// "switch" (Sentinel announced a new master).
	TopologyReloads *prometheus.CounterVec
}

// latencyBuckets cover a cache hit (sub-millisecond) up to a slow upstream
// call that runs into the default 3s timeout.
var latencyBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// New builds every collector and registers it on reg. It panics if a
// collector is already registered on reg, as prometheus.MustRegister does:
// that is a wiring bug, not a runtime condition.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_requests_total",
			Help: "Proxy requests answered, by cache result and HTTP status code.",
		}, []string{"cache", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "userproxy_request_duration_seconds",
			Help:    "Time to answer a proxy request, by cache result.",
			Buckets: latencyBuckets,
		}, []string{"cache"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_upstream_requests_total",
			Help: "Upstream calls by HTTP status code (\"error\" for transport failures and timeouts).",
		}, []string{"code"}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "userproxy_upstream_request_duration_seconds",
			Help:    "Time of each upstream call, including reading the body.",
			Buckets: latencyBuckets,
		}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "userproxy_circuit_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		}, []string{"breaker"}),
		CacheErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_cache_errors_total",
			Help: "Failed cache operations by operation; the proxy fails open to the upstream.",
		}, []string{"op"}),
		Coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userproxy_coalesced_requests_total",
			Help: "Requests that waited for another request's upstream call instead of making their own.",
		}),
		SharedReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userproxy_shared_cache_reads_total",
			Help: "Requests that waited on another request's cache read of the same key instead of making their own.",
		}),
		Invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_invalidations_total",
			Help: "Invalidations by source (write, create, roles, admin, admin_all, retry).",
		}, []string{"source"}),
		StaleServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_stale_served_total",
			Help: "Expired entries served on purpose, by reason (revalidate, error, breaker_open).",
		}, []string{"reason"}),
		BackgroundRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_background_refreshes_total",
			Help: "Refreshes run off the request path, by result (stored, not_stored, error).",
		}, []string{"result"}),
		EarlyRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userproxy_early_refreshes_total",
			Help: "Refreshes started before expiry by probabilistic early refresh.",
		}),
		StaleSetRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userproxy_stale_set_refused_total",
			Help: "Fills not stored because the user was invalidated while they were in flight.",
		}),
		FillLeases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_fill_leases_total",
			Help: "Fleet-wide fill leases by result: won (this replica filled), waited (answered from another replica's fill), expired (took over from a holder that never answered), fallback (Redis not answering in time: local coalescing only).",
		}, []string{"result"}),
		FleetBreakerReports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userproxy_fleet_breaker_reports",
			Help: "Distinct replicas that had announced an open upstream breaker within the open period, as last read from Redis.",
		}),
		TopologyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userproxy_redis_topology_reloads_total",
			Help: "Reloads of the Redis topology (Cluster slot map, Sentinel master) by reason: error, moved, periodic, switch.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.UpstreamRequests,
		m.UpstreamDuration, m.BreakerState, m.CacheErrors, m.Coalesced, m.SharedReads, m.Invalidations,
		m.StaleServed, m.BackgroundRefreshes, m.EarlyRefreshes, m.StaleSetRefused,
		m.FillLeases, m.FleetBreakerReports, m.TopologyReloads)

	// Pre-create the series dashboards and alerts divide by, so a rate()
	// over them exists from the first scrape instead of appearing on the
	// first event.
	for _, c := range []string{CacheHit, CacheStale, CacheMiss, CacheNegative, CacheBypass, CacheError} {
		m.RequestDuration.WithLabelValues(c)
	}
	for _, op := range []string{OpGet, OpSet, OpInvalidate, OpDecode} {
		m.CacheErrors.WithLabelValues(op)
	}
	for _, r := range []string{StaleRevalidate, StaleError, StaleBreakerOpen} {
		m.StaleServed.WithLabelValues(r)
	}
	for _, s := range []string{"write", "create", "roles", "admin", "admin_all", "retry"} {
		m.Invalidations.WithLabelValues(s)
	}
	for _, r := range []string{LeaseWon, LeaseWaited, LeaseExpired, LeaseFallback} {
		m.FillLeases.WithLabelValues(r)
	}
	for _, r := range []string{"error", "moved", "periodic", "switch"} {
		m.TopologyReloads.WithLabelValues(r)
	}
	m.BreakerState.WithLabelValues("upstream").Set(BreakerClosed)
	m.BreakerState.WithLabelValues("cache").Set(BreakerClosed)
	return m
}

// codes holds the label value of every status code, so labelling a
// request does not allocate.
var codes = func() (c [600]string) {
	for i := 100; i < len(c); i++ {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

// Code returns the "code" label value for an HTTP status: the three-digit
// code, or "error" for 0 (no HTTP answer) and anything out of range. The set
// of values is closed.
func Code(status int) string {
	if status < 100 || status >= len(codes) {
		return "error"
	}
	return codes[status]
}
