package proxy_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// forEachStore runs f once per store kind, each with a fresh store. build
// makes the env; newEnvFn unless a test needs other defaults.
func forEachStore(t *testing.T, f func(t *testing.T, e func(envOptions) *env), build ...func(*testing.T, readthrough.Store, envOptions) *env) {
	mk := newEnvFn
	if len(build) > 0 {
		mk = build[0]
	}
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			clock := newTestClock() // one per store kind, shared by its envs and stores
			f(t, func(o envOptions) *env {
				o.clock = clock
				return mk(t, sk.new(t, clock), o)
			})
		})
	}
}

var newEnvFn = newEnv

func TestMissThenHit(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		want := e.userBody(alice, "7")

		r := e.get("7", alice)
		e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		if r.body != want {
			t.Errorf("miss body: got %q, want the upstream's bytes %q", r.body, want)
		}
		if got := r.header.Get("Age"); got != "0" {
			t.Errorf("miss Age: got %q, want 0", got)
		}

		e.clock.Advance(5 * time.Second)
		r = e.get("7", alice)
		e.want(r, http.StatusOK, "userproxy; hit; ttl=55")
		if r.body != want {
			t.Errorf("hit body: got %q, want byte-identical %q", r.body, want)
		}
		if got := r.header.Get("Age"); got != "5" {
			t.Errorf("hit Age: got %q, want 5", got)
		}
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("hit Content-Type: got %q, want application/json", got)
		}
		if got := e.up.RequestsFor("7"); got != 1 {
			t.Errorf("upstream calls: got %d, want 1", got)
		}
		if got := e.requests("miss", "200"); got != 1 {
			t.Errorf(`requests_total{cache="miss",code="200"}: got %v, want 1`, got)
		}
		if got := e.requests("hit", "200"); got != 1 {
			t.Errorf(`requests_total{cache="hit",code="200"}: got %v, want 1`, got)
		}

		// Past the fresh lifetime the entry is not served as a hit.
		e.clock.Advance(60 * time.Second)
		r = e.get("7", alice)
		e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		if got := e.up.RequestsFor("7"); got != 2 {
			t.Errorf("upstream calls after expiry: got %d, want 2", got)
		}
	})
}

func TestHeadServesHeadersOnly(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	e.get("3", alice)
	r := e.do(http.MethodHead, "/api/users/3", alice, "")
	e.want(r, http.StatusOK, "userproxy; hit; ttl=60")
	if r.body != "" {
		t.Errorf("HEAD body: got %q, want none", r.body)
	}
	if got, want := r.header.Get("Content-Length"), len(e.userBody(alice, "3")); got != strconv.Itoa(want) {
		t.Errorf("HEAD Content-Length: got %s, want %d", got, want)
	}
}

func TestScopeIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		aliceBody, bobBody := e.userBody(alice, "1"), e.userBody(bob, "1")
		if aliceBody == bobBody {
			t.Fatal("fake upstream gives both tenants the same body; the test could not see a leak")
		}
		for round := 0; round < 3; round++ {
			if r := e.get("1", alice); r.body != aliceBody {
				t.Errorf("round %d: alice got %q, want her own body", round, r.body)
			}
			if r := e.get("1", bob); r.body != bobBody {
				t.Errorf("round %d: bob got %q, want his own body", round, r.body)
			}
		}
		// The upstream saw each credential once: one fill per scope.
		if got := e.up.RequestsFor("1"); got != 2 {
			t.Errorf("upstream calls: got %d, want 2 (one per credential)", got)
		}
		// Wrong password for a cached id: not a hit, goes upstream, 401.
		mallory := upstreamtest.Credential{Username: alice.Username, Password: "wrong"}
		r := e.get("1", mallory)
		e.want(r, http.StatusUnauthorized, "userproxy; fwd=uri-miss; fwd-status=401")
		if r.body == aliceBody {
			t.Error("a wrong password was served alice's cached body")
		}
		if r.header.Get("Www-Authenticate") == "" {
			t.Error("upstream 401 passed on without its WWW-Authenticate challenge")
		}
		// 401s are never stored.
		e.get("1", mallory)
		if got := e.up.RequestsFor("1"); got != 4 {
			t.Errorf("upstream calls after two 401s: got %d, want 4", got)
		}
	})
}

func TestStampedeCoalesces(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{upstream: upstreamtest.Options{Latency: 100 * time.Millisecond}})
		want := e.userBody(alice, "42")
		const n = 100
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]response, n)
		for i := range n {
			wg.Go(func() {
				<-start
				results[i] = e.get("42", alice)
			})
		}
		close(start)
		wg.Wait()
		for i, r := range results {
			if r.status != http.StatusOK || r.body != want {
				t.Fatalf("request %d: got %d %q, want 200 with the user", i, r.status, r.body)
			}
		}
		if got := e.up.RequestsFor("42"); got != 1 {
			t.Errorf("upstream calls for 100 concurrent cold requests: got %d, want 1", got)
		}
		// Every request but the leader either waited on the fill or came
		// late enough to hit what it stored.
		coalesced := testutil.ToFloat64(e.m.Coalesced)
		if hits := e.requests("hit", "200"); coalesced+hits != n-1 {
			t.Errorf("coalesced (%v) + hits (%v): got %v, want %d", coalesced, hits, coalesced+hits, n-1)
		}
		if coalesced == 0 {
			t.Error("no request was coalesced; the stampede did not overlap")
		}
	})
}

func TestNegativeCaching(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		r := e.get("99999", alice)
		e.want(r, http.StatusNotFound, "userproxy; fwd=uri-miss; fwd-status=404; stored")
		e.clock.Advance(3 * time.Second)
		r = e.get("99999", alice)
		e.want(r, http.StatusNotFound, "userproxy; hit; ttl=7; detail=negative")
		if got := e.requests("negative", "404"); got != 1 {
			t.Errorf(`requests_total{cache="negative",code="404"}: got %v, want 1`, got)
		}
		e.clock.Advance(10 * time.Second) // past -negative-ttl
		e.get("99999", alice)
		if got := e.up.RequestsFor("99999"); got != 2 {
			t.Errorf("upstream calls: got %d, want 2 (one before, one after the negative TTL)", got)
		}
	})
}

func TestUpstreamWriteInvalidatesEveryScope(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		oldAlice, oldBob := e.get("5", alice).body, e.get("5", bob).body

		r := e.do(http.MethodPut, "/api/users/5", alice, `{"is_clockedin":"1","first_name":"Renamed"}`)
		e.want(r, http.StatusOK, "userproxy; fwd=method")

		if r := e.get("5", alice); r.body == oldAlice || r.body != e.userBody(alice, "5") {
			t.Errorf("after PUT alice got %q, want the new body %q", r.body, e.userBody(alice, "5"))
		}
		r = e.get("5", bob)
		e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		if r.body != oldBob { // bob's tenant was not written, but his entry was dropped too
			t.Errorf("bob got %q, want %q", r.body, oldBob)
		}
		if got := testutil.ToFloat64(e.m.Invalidations.WithLabelValues("write")); got != 1 {
			t.Errorf(`invalidations_total{source="write"}: got %v, want 1`, got)
		}
	})
}
