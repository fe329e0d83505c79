package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// storeKind builds a fresh, empty store for one test.
type storeKind struct {
	name string
	// new builds the store; clock is the test's, for a store that judges
	// time itself (the tier), and nil for one that does not need it.
	new func(t *testing.T, clock *testkit.Clock) readthrough.Store
}

// storeKinds are the stores every behavioural test runs against: the
// embedded store, go-redis on miniredis, go-redis on a real redis-server
// this test starts itself, and go-redis on a real Redis Cluster and through
// a real Sentinel set. Reads on
// the real servers are batched (-redis-autopipeline, the binary's default);
// on miniredis they are not, so both ways run the whole suite.
var storeKinds = []storeKind{
	{"memory", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		return cache.NewMemory(cache.MemoryOptions{})
	}},
	{"miniredis", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		mr := miniredis.RunT(t)
		return redisStore(t, "redis://"+mr.Addr())
	}},
	{"redis-server", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		return batchedRedisStore(t, redistest.Start(t).URL())
	}},
	{"redis-server+l1", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		return tieredStore(t, redistest.Start(t).URL(), clock)
	}},
	// One cluster serves the whole package (a cluster takes seconds to
	// start); each store keeps to a key prefix of its own.
	{"redis-cluster", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		return newRedisStore(t, sharedCluster.Get(t).URL(), cache.RedisOptions{AutoPipeline: true, Prefix: sharedPrefix()})
	}},
	// Likewise one Sentinel set (a master, its replica, three Sentinels).
	{"redis-sentinel", func(t *testing.T, clock *testkit.Clock) readthrough.Store {
		return newRedisStore(t, sharedSentinel.Get(t).URL(), cache.RedisOptions{AutoPipeline: true, Prefix: sharedPrefix()})
	}},
}

// sharedCluster is the package's one Redis Cluster, started by the first
// test that needs it and stopped by TestMain.
var sharedCluster redistest.SharedCluster

// sharedSentinel is the package's one Sentinel set, as sharedCluster.
var sharedSentinel redistest.SharedSentinel

// sharedPrefixes numbers the key prefixes handed out on sharedCluster and
// sharedSentinel.
var sharedPrefixes atomic.Int64

// sharedPrefix returns a key prefix no other store on sharedCluster or
// sharedSentinel uses,
// so that every store there starts empty, as a store on a server of its
// own does.
func sharedPrefix() string {
	return "userproxy-t" + strconv.FormatInt(sharedPrefixes.Add(1), 10)
}

// tieredStore is a Redis store behind the in-process tier, subscribed to
// invalidations for the test's lifetime.
func tieredStore(t *testing.T, rawURL string, clock *testkit.Clock) *cache.Tiered {
	t.Helper()
	tier, err := cache.NewTiered(batchedRedisStore(t, rawURL), cache.L1Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, func(ctx context.Context) { tier.Run(ctx) })
	// The first subscription flushes the tier: let it happen first.
	testkit.Await(t, "the tier to subscribe", func() bool { return tier.Stats().Subscribes > 0 })
	return tier
}

// redisStore is a Redis store on rawURL whose reads are not batched.
func redisStore(t *testing.T, rawURL string) *cache.Redis {
	t.Helper()
	return newRedisStore(t, rawURL, cache.RedisOptions{})
}

// batchedRedisStore is a Redis store on rawURL whose reads are batched.
func batchedRedisStore(t *testing.T, rawURL string) *cache.Redis {
	t.Helper()
	return newRedisStore(t, rawURL, cache.RedisOptions{AutoPipeline: true})
}

func newRedisStore(t *testing.T, rawURL string, opts cache.RedisOptions) *cache.Redis {
	t.Helper()
	// Generous timeouts: -race on a 2-core machine is slow, and these tests
	// are about behaviour, not the latency budget.
	client, err := cache.NewUniversalClient(rawURL, cache.ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return cache.NewRedis(client, opts)
}

// newTestClock is a test's clock, shared by its envs and its stores (the
// in-process tier judges freshness and its lease by it, so it must see the
// time the handler sees).
func newTestClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
}

// env is one proxy in front of one fake upstream.
type env struct {
	t      *testing.T
	up     *upstreamtest.Server
	client *upstream.Client
	eng    *readthrough.Engine
	h      *proxy.Handler
	srv    *testServer
	m      *metrics.Metrics
	reg    *prometheus.Registry
	clock  *testkit.Clock
	store  readthrough.Store
}

type envOptions struct {
	upstream upstreamtest.Options
	breaker  upstream.BreakerOptions
	inject   *upstream.Credentials
	timeout  time.Duration
	engine   func(*readthrough.Options)
	proxy    func(*proxy.Options)
	// wrapUpstream, if set, puts a handler of the test's in front of the
	// fake upstream (to hold or alter its answers).
	wrapUpstream func(http.Handler) http.Handler
	// shareUpstream, if set, is the fake upstream to use instead of a new
	// one: another env's, so that two proxies front one API (replicas).
	shareUpstream *upstreamtest.Server
	// clock is the test's clock, shared with its stores (newTestClock);
	// nil: a clock of the env's own.
	clock *testkit.Clock
}

func newEnv(t *testing.T, store readthrough.Store, o envOptions) *env {
	t.Helper()
	up := o.shareUpstream
	if up == nil {
		up = upstreamtest.NewServer(t, o.upstream)
	}
	clock := o.clock
	if clock == nil {
		clock = newTestClock()
	}
	e := &env{t: t, up: up, reg: prometheus.NewRegistry(), clock: clock, store: store}
	e.m = metrics.New(e.reg)
	timeout := o.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	upURL := e.up.URL
	if o.wrapUpstream != nil {
		wrapped := httptest.NewServer(o.wrapUpstream(e.up.Handler))
		t.Cleanup(wrapped.Close)
		upURL = wrapped.URL
	}
	var err error
	e.client, err = upstream.New(upstream.Options{
		BaseURL: upURL, Inject: o.inject, Timeout: timeout, Breaker: o.breaker,
		Observe: func(status int, _ error, d time.Duration) {
			e.m.UpstreamRequests.WithLabelValues(metrics.Code(status)).Inc()
		},
	})
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(e.client.CloseIdleConnections)
	base, _ := url.Parse(upURL)
	engOpts := readthrough.Options{
		Store: store, Upstream: e.client, KeySecret: []byte("test-secret-0123456789"),
		Inject: o.inject, Metrics: e.m, Now: e.clock.Now,
		CacheTimeout: time.Second, FillTimeout: timeout + 2*time.Second,
	}
	if o.engine != nil {
		o.engine(&engOpts)
	}
	e.eng, err = readthrough.New(engOpts)
	if err != nil {
		t.Fatalf("readthrough.New: %v", err)
	}
	opts := proxy.Options{
		Engine: e.eng, Metrics: e.m,
		PassthroughURL: base, PassthroughTransport: e.client.Transport(),
	}
	if o.proxy != nil {
		o.proxy(&opts)
	}
	e.h, err = proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	e.srv = newTestServer(t, e.h)
	t.Cleanup(e.eng.Close) // these run after the server has closed
	t.Cleanup(e.h.Close)
	t.Cleanup(e.srv.Close)
	return e
}

// response is what a client saw.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends one request as user (empty user: no credentials).
func (e *env) do(method, path string, cred upstreamtest.Credential, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	if cred.Username != "" {
		req.SetBasicAuth(cred.Username, cred.Password)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) response {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("reading body: %v", err)
	}
	// A miss answers before its store (readthrough.Engine.Settle): the
	// tests' next request is to find it stored, not join the fill.
	e.eng.Settle()
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *env) get(id string, cred upstreamtest.Credential) response {
	e.t.Helper()
	return e.do(http.MethodGet, "/api/users/"+id, cred, "")
}

// want checks status and Cache-Status of r.
func (e *env) want(r response, status int, cacheStatus string) {
	e.t.Helper()
	if r.status != status {
		e.t.Errorf("status: got %d, want %d (body %q)", r.status, status, r.body)
	}
	if got := r.header.Get("Cache-Status"); got != cacheStatus {
		e.t.Errorf("Cache-Status: got %q, want %q", got, cacheStatus)
	}
}

// requests returns userproxy_requests_total{cache,code}.
func (e *env) requests(result, code string) float64 {
	return testutil.ToFloat64(e.m.Requests.WithLabelValues(result, code))
}

// userBody is the exact body the upstream gives cred for id.
func (e *env) userBody(cred upstreamtest.Credential, id string) string {
	e.t.Helper()
	b, ok := e.up.User(cred.Tenant, id)
	if !ok {
		e.t.Fatalf("fake upstream has no user %s for tenant %s", id, cred.Tenant)
	}
	return string(b)
}

var (
	alice = upstreamtest.DemoCredentials()[0] // tenant acme
	bob   = upstreamtest.DemoCredentials()[1] // tenant globex
)

func itoa(n int) string { return strconv.Itoa(n) }

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// getWith sends a GET with one extra request header.
func (e *env) getWith(id string, cred upstreamtest.Credential, name, value string) response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/users/"+id, nil)
	req.SetBasicAuth(cred.Username, cred.Password)
	req.Header.Set(name, value)
	return e.send(req)
}

// putRequest is a PUT for the fake upstream itself, to change a user behind
// the proxy's back.
func putRequest(t *testing.T, id string, cred upstreamtest.Credential, body string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPut, "/api/users/"+id, strings.NewReader(body))
	req.SetBasicAuth(cred.Username, cred.Password)
	return req
}

// nopWriter discards a response.
type nopWriter struct{}

func (nopWriter) Header() http.Header         { return http.Header{} }
func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriter) WriteHeader(int)             {}
