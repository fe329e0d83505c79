package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// freshEnv is a proxy with the freshness features on, as the flags default
// them: 60s fresh, 30s stale-while-revalidate, 1h stale-if-error.
func freshEnv(t *testing.T, store readthrough.Store, o envOptions) *env {
	t.Helper()
	next := o.engine
	o.engine = func(p *readthrough.Options) {
		p.StaleWhileRevalidate = 30 * time.Second
		p.StaleIfError = time.Hour
		if next != nil {
			next(p)
		}
	}
	return newEnv(t, store, o)
}

func TestStaleWhileRevalidate(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		old := e.get("11", alice).body
		// The upstream changes behind the proxy's back (no invalidation).
		e.up.ServeHTTP(nopWriter{}, putRequest(t, "11", alice, `{"first_name":"Changed"}`))
		fresh := e.userBody(alice, "11")

		e.clock.Advance(70 * time.Second) // 10s past the fresh lifetime
		e.up.SetLatency(300 * time.Millisecond)
		r := e.get("11", alice)
		e.want(r, http.StatusOK, "userproxy; hit; fwd=stale; detail=stale-while-revalidate; ttl=-10")
		if r.body != old {
			t.Fatalf("got %q, want the stale copy at once", r.body)
		}
		// More clients while the refresh is in flight: each gets the
		// stale copy at once (or, if the refresh already landed, the new
		// one); none starts another refresh.
		var wg sync.WaitGroup
		results := make([]response, 19)
		for i := range results {
			wg.Go(func() { results[i] = e.get("11", alice) })
		}
		wg.Wait()
		stale := 1
		for i, r := range results {
			switch r.body {
			case old:
				stale++
				e.want(r, http.StatusOK, "userproxy; hit; fwd=stale; detail=stale-while-revalidate; ttl=-10")
			case fresh:
			default:
				t.Fatalf("request %d: got %q, want the stale or the refreshed body", i, r.body)
			}
		}
		testkit.Await(t, "the background refresh", func() bool {
			return testutil.ToFloat64(e.m.BackgroundRefreshes.WithLabelValues("stored")) == 1
		})
		if got := e.up.RequestsFor("11"); got != 2 {
			t.Errorf("upstream calls: got %d, want 2 (the fill and one refresh)", got)
		}
		r = e.get("11", alice)
		e.want(r, http.StatusOK, "userproxy; hit; ttl=60")
		if r.body != fresh {
			t.Errorf("after the refresh: got %q, want the new body", r.body)
		}
		if got := testutil.ToFloat64(e.m.StaleServed.WithLabelValues("revalidate")); got != float64(stale) {
			t.Errorf(`stale_served_total{reason="revalidate"}: got %v, want %d`, got, stale)
		}
		if got := e.requests("stale", "200"); got != float64(stale) {
			t.Errorf(`requests_total{cache="stale",code="200"}: got %v, want %d`, got, stale)
		}
	}, freshEnv)
}

func TestStaleIfError(t *testing.T) {
	for _, tc := range []struct {
		fault       upstreamtest.Fault
		cacheStatus string
		reason      string
	}{
		{upstreamtest.FaultServerError, "userproxy; hit; fwd=stale; fwd-status=500; ttl=-120", "error"},
		{upstreamtest.FaultUnavailable, "userproxy; hit; fwd=stale; fwd-status=503; ttl=-120", "error"},
		{upstreamtest.FaultHang, "userproxy; hit; fwd=stale; detail=timeout; ttl=-120", "error"},
		{upstreamtest.FaultReset, "userproxy; hit; fwd=stale; detail=connection-error; ttl=-120", "error"},
		{upstreamtest.FaultMalformed, "userproxy; hit; fwd=stale; fwd-status=200; detail=invalid-json; ttl=-120", "error"},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
				e := newEnv(envOptions{timeout: 200 * time.Millisecond, breaker: upstream.BreakerOptions{ConsecutiveFailures: 100}})
				old := e.get("12", alice).body
				e.clock.Advance(3 * time.Minute) // past stale-while-revalidate, within stale-if-error
				e.up.SetFault(tc.fault)
				r := e.get("12", alice)
				e.want(r, http.StatusOK, tc.cacheStatus)
				if r.body != old {
					t.Errorf("got %q, want the stale copy", r.body)
				}
				if got := testutil.ToFloat64(e.m.StaleServed.WithLabelValues(tc.reason)); got != 1 {
					t.Errorf(`stale_served_total{reason=%q}: got %v, want 1`, tc.reason, got)
				}
				// Beyond -stale-ttl the copy is not used.
				e.clock.Advance(time.Hour)
				if r := e.get("12", alice); r.status == http.StatusOK {
					t.Errorf("past -stale-ttl: got 200 %q, want an error", r.header.Get("Cache-Status"))
				}
			}, freshEnv)
		})
	}
}

func TestStaleIfBreakerOpen(t *testing.T) {
	e := freshEnv(t, storeKinds[0].new(t, nil), envOptions{breaker: upstream.BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: time.Hour}})
	old := e.get("13", alice).body
	e.up.SetFault(upstreamtest.FaultServerError)
	e.get("14", alice) // one failure opens the breaker
	e.clock.Advance(2 * time.Minute)
	r := e.get("13", alice)
	e.want(r, http.StatusOK, "userproxy; hit; fwd=stale; detail=breaker-open; ttl=-60")
	if r.body != old {
		t.Errorf("got %q, want the stale copy", r.body)
	}
	if got := testutil.ToFloat64(e.m.StaleServed.WithLabelValues("breaker_open")); got != 1 {
		t.Errorf(`stale_served_total{reason="breaker_open"}: got %v, want 1`, got)
	}
}

func TestNegativeEntryNeverServedStale(t *testing.T) {
	e := freshEnv(t, storeKinds[0].new(t, nil), envOptions{breaker: upstream.BreakerOptions{ConsecutiveFailures: 100}})
	e.get("77777", alice) // cached 404
	e.clock.Advance(15 * time.Second)
	e.up.SetFault(upstreamtest.FaultServerError)
	r := e.get("77777", alice)
	wantJSONError(t, r, http.StatusBadGateway)
}

// TestUpstreamDownServesEveryCachedUser is the outage drill: the upstream
// goes away; every user cached before is still served, marked stale, and a
// user nobody cached gets a 503 instead of waiting.
func TestUpstreamDownServesEveryCachedUser(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{breaker: upstream.BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: time.Hour}})
		bodies := map[string]string{}
		for i := 1; i <= 20; i++ {
			id := itoa(i)
			bodies[id] = e.get(id, alice).body
		}
		e.up.Close()
		e.clock.Advance(5 * time.Minute)
		for id, want := range bodies {
			r := e.get(id, alice)
			if r.status != http.StatusOK || r.body != want {
				t.Errorf("user %s during the outage: got %d %q, want the stale copy", id, r.status, r.body)
			}
			if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, "userproxy; hit; fwd=stale; ") {
				t.Errorf("user %s: Cache-Status %q, want it marked stale", id, cs)
			}
		}
		r := e.get("21", alice)
		wantJSONError(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}, freshEnv)
}

// TestWriteDropsEveryScopeEvenForStaleIfError: after a PUT through the
// proxy no scope is ever served the old body — not as a hit, not stale.
func TestWriteDropsEveryScopeEvenForStaleIfError(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{breaker: upstream.BreakerOptions{ConsecutiveFailures: 100}})
		old := map[string]string{"alice": e.get("15", alice).body, "bob": e.get("15", bob).body}
		if r := e.do(http.MethodPut, "/api/users/15", alice, `{"is_clockedin":"0"}`); r.status != http.StatusOK {
			t.Fatalf("PUT: got %d %q", r.status, r.body)
		}
		e.up.SetFault(upstreamtest.FaultServerError)
		e.clock.Advance(2 * time.Minute)
		for name, cred := range map[string]upstreamtest.Credential{"alice": alice, "bob": bob} {
			r := e.get("15", cred)
			if r.body == old[name] {
				t.Errorf("%s was served the pre-write body after the write (%q)", name, r.header.Get("Cache-Status"))
			}
		}
	}, freshEnv)
}

func TestClientNoCacheRevalidates(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{upstream: upstreamtest.Options{Latency: 50 * time.Millisecond}})
		e.get("16", alice)
		e.up.ServeHTTP(nopWriter{}, putRequest(t, "16", alice, `{"last_name":"Revalidated"}`))
		if r := e.get("16", alice); r.body == e.userBody(alice, "16") {
			t.Fatal("a plain request already sees the change; the test cannot tell no-cache apart")
		}
		var wg sync.WaitGroup
		results := make([]response, 10)
		for i := range results {
			wg.Go(func() { results[i] = e.getWith("16", alice, "Cache-Control", "no-cache") })
		}
		wg.Wait()
		for _, r := range results {
			if r.body != e.userBody(alice, "16") {
				t.Fatalf("no-cache: got %q (%s), want the upstream's current body", r.body, r.header.Get("Cache-Status"))
			}
		}
		if got := e.up.RequestsFor("16"); got != 2 {
			t.Errorf("upstream calls: got %d, want 2 (the fill and one coalesced revalidation)", got)
		}
		// The revalidation refreshed the entry for everyone.
		r := e.get("16", alice)
		e.want(r, http.StatusOK, "userproxy; hit; ttl=60")
		if r.body != e.userBody(alice, "16") {
			t.Errorf("after no-cache: got %q, want the refreshed body", r.body)
		}
	}, newEnvFn)
}

func TestClientNoStoreBypasses(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	r := e.getWith("17", alice, "Cache-Control", "no-store")
	e.want(r, http.StatusOK, "userproxy; fwd=request; fwd-status=200")
	r = e.get("17", alice)
	e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored") // nothing was stored
	r = e.getWith("17", alice, "Cache-Control", "no-store")
	e.want(r, http.StatusOK, "userproxy; fwd=request; fwd-status=200") // nor read
	if got := e.up.RequestsFor("17"); got != 3 {
		t.Errorf("upstream calls: got %d, want 3", got)
	}
}

func TestClientCacheControlCanBeIgnored(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{proxy: func(o *proxy.Options) { o.IgnoreClientCacheControl = true }})
	e.get("18", alice)
	for _, cc := range []string{"no-cache", "no-store", "max-age=0"} {
		r := e.getWith("18", alice, "Cache-Control", cc)
		e.want(r, http.StatusOK, "userproxy; hit; ttl=60")
	}
}

func TestEarlyRefresh(t *testing.T) {
	// A real clock (the fetch time must be real), a random source at the
	// far tail, and a strong beta: the first hit must refresh early.
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{
		upstream: upstreamtest.Options{Latency: 20 * time.Millisecond},
		engine: func(o *readthrough.Options) {
			o.Now = time.Now
			o.TTL = 10 * time.Second // gap = 20ms·100·ln(1e6) ≈ 28s: past expiry
			o.EarlyRefreshBeta = 100
			o.Rand = func() float64 { return 0.999999 }
		},
	})
	e.get("19", alice)
	r := e.get("19", alice)
	if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, "userproxy; hit; ttl=") {
		t.Fatalf("Cache-Status: got %q, want a hit (early refresh runs in the background)", cs)
	}
	testkit.Await(t, "the early refresh", func() bool {
		return testutil.ToFloat64(e.m.BackgroundRefreshes.WithLabelValues("stored")) == 1
	})
	if got := testutil.ToFloat64(e.m.EarlyRefreshes); got != 1 {
		t.Errorf("early_refreshes_total: got %v, want 1", got)
	}
	if got := e.up.RequestsFor("19"); got != 2 {
		t.Errorf("upstream calls: got %d, want 2", got)
	}
}

func TestRedactFields(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{engine: func(o *readthrough.Options) { o.RedactFields = []string{"registration_password"} }})
		if !strings.Contains(e.userBody(alice, "9"), `"registration_password"`) {
			t.Fatal("the fake's body has no registration_password; the test would prove nothing")
		}
		for _, r := range []response{e.get("9", alice), e.get("9", alice), e.getWith("9", alice, "Cache-Control", "no-store")} {
			if r.status != http.StatusOK || strings.Contains(r.body, "registration_password") {
				t.Errorf("%s: got %d %q, want the user without registration_password", r.header.Get("Cache-Status"), r.status, r.body)
			}
			if !strings.Contains(r.body, `"username"`) {
				t.Errorf("redaction removed more than asked: %q", r.body)
			}
		}
	})
}
