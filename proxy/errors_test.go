package proxy_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// wantJSONError checks the proxy's own error body.
func wantJSONError(t *testing.T, r response, status int) {
	t.Helper()
	var body struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if body.Status != status || body.Error == "" || r.status != status {
		t.Errorf("got %d %+v, want %d with a message", r.status, body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type: got %q, want application/json", ct)
	}
}

func TestInvalidIDsNeverReachUpstream(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	for _, path := range []string{
		"/api/users/a%2Fb", "/api/users/%00", "/api/users/%2e%2e", "/api/users/caf%C3%A9",
		"/api/users/" + strings.Repeat("9", 65), "/api/users/", "/api/users/1;drop",
	} {
		t.Run(path[:min(len(path), 30)], func(t *testing.T) {
			r := e.do(http.MethodGet, path, alice, "")
			wantJSONError(t, r, http.StatusBadRequest)
		})
	}
	if got := e.up.Requests(); got != 0 {
		t.Errorf("upstream calls: got %d, want 0", got)
	}
}

func TestBadCredentialsAnsweredLocally(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ name, header string }{
		{"missing", ""},
		{"bearer", "Bearer abc"},
		{"not base64", "Basic !!!"},
		{"no colon", "Basic " + b64([]byte("demo"))},
		{"empty user", "Basic " + b64([]byte(":pw"))},
		{"huge", "Basic " + b64([]byte("demo:"+strings.Repeat("x", 4000)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/users/1", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			r := e.send(req)
			wantJSONError(t, r, http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("Www-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate: got %q, want a Basic challenge", r.header.Get("Www-Authenticate"))
			}
			if strings.Contains(r.body, "demo") {
				t.Errorf("error body %q echoes the credentials", r.body)
			}
		})
	}
	if got := e.up.Requests(); got != 0 {
		t.Errorf("upstream calls: got %d, want 0", got)
	}
}

func TestUpstreamFaultsAreNotStored(t *testing.T) {
	for _, tc := range []struct {
		fault       upstreamtest.Fault
		status      int
		cacheStatus string
		retryAfter  string
	}{
		{upstreamtest.FaultServerError, 502, "userproxy; fwd=uri-miss; fwd-status=500", ""},
		{upstreamtest.FaultUnavailable, 502, "userproxy; fwd=uri-miss; fwd-status=503", ""},
		{upstreamtest.FaultTooManyRequests, 429, "userproxy; fwd=uri-miss; fwd-status=429", "3"},
		{upstreamtest.FaultMalformed, 502, "userproxy; fwd=uri-miss; fwd-status=200; detail=invalid-json", ""},
		{upstreamtest.FaultOversize, 502, "userproxy; fwd=uri-miss; fwd-status=200; detail=body-too-large", ""},
		{upstreamtest.FaultHang, 504, "userproxy; fwd=uri-miss; detail=timeout", ""},
		{upstreamtest.FaultSlowBody, 504, "userproxy; fwd=uri-miss; detail=timeout", ""},
		{upstreamtest.FaultReset, 503, "userproxy; fwd=uri-miss; detail=connection-error", "1"},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			e := newEnv(t, storeKinds[0].new(t, nil), envOptions{timeout: 300 * time.Millisecond,
				breaker: upstream.BreakerOptions{ConsecutiveFailures: 100}})
			e.up.SetFault(tc.fault)
			r := e.get("2", alice)
			wantJSONError(t, r, tc.status)
			if got := r.header.Get("Cache-Status"); got != tc.cacheStatus {
				t.Errorf("Cache-Status: got %q, want %q", got, tc.cacheStatus)
			}
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After: got %q, want %q", got, tc.retryAfter)
			}
			if got := e.requests("error", itoa(tc.status)); got != 1 {
				t.Errorf(`requests_total{cache="error",code="%d"}: got %v, want 1`, tc.status, got)
			}
			// Nothing was stored: once the upstream is healthy the next
			// request is a miss that reaches it.
			e.up.SetFault(upstreamtest.FaultNone)
			r = e.get("2", alice)
			e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		})
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{
		breaker: upstream.BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: 200 * time.Millisecond},
	})
	e.get("8", alice) // cached before the storm: hits keep working while open
	e.up.SetFault(upstreamtest.FaultServerError)
	for i := range 3 {
		if r := e.get(itoa(10+i), alice); r.status != http.StatusBadGateway {
			t.Fatalf("storm request %d: got %d, want 502", i, r.status)
		}
	}
	before := e.up.Requests()
	r := e.get("20", alice)
	wantJSONError(t, r, http.StatusServiceUnavailable)
	e.want(r, http.StatusServiceUnavailable, "userproxy; fwd=uri-miss; detail=breaker-open")
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After: got %q, want 1 (200ms open timeout, rounded up)", ra)
	}
	if got := e.up.Requests(); got != before {
		t.Errorf("upstream calls while open: got %d more, want 0", got-before)
	}
	if r := e.get("8", alice); r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Cache-Status"), "userproxy; hit") {
		t.Errorf("cached user while open: got %d %q, want a hit", r.status, r.header.Get("Cache-Status"))
	}

	// Recovery: once the open timeout passes, a trial call goes through
	// and closes the breaker.
	e.up.SetFault(upstreamtest.FaultNone)
	testkit.Await(t, "the breaker to close after the upstream recovered", func() bool {
		return e.get("20", alice).status == http.StatusOK
	})
	if r := e.get("21", alice); r.status != http.StatusOK {
		t.Errorf("after recovery: got %d, want 200", r.status)
	}
}

func TestCacheDownFailsOpen(t *testing.T) {
	mr := miniredis.RunT(t)
	e := newEnv(t, redisStore(t, "redis://"+mr.Addr()), envOptions{})
	e.get("4", alice)
	mr.Close()
	r := e.get("4", alice)
	e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; detail=cache-unavailable")
	if r.body != e.userBody(alice, "4") {
		t.Errorf("body with the cache down: got %q, want the upstream's", r.body)
	}
	if got := e.requests("miss", "200"); got != 2 {
		t.Errorf(`requests_total{cache="miss",code="200"}: got %v, want 2`, got)
	}
	if got := testutilValue(e.m.CacheErrors.WithLabelValues("get")); got < 1 {
		t.Errorf(`cache_errors_total{op="get"}: got %v, want >= 1`, got)
	}
}

func TestInjectMode(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{
		inject: &upstream.Credentials{Username: bob.Username, Password: bob.Password},
	})
	r := e.get("6", upstreamtest.Credential{}) // caller sends no credentials
	e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
	if r.body != e.userBody(bob, "6") {
		t.Errorf("inject mode body: got %q, want the injected user's view", r.body)
	}
	// Every caller shares the injected scope, whatever it sends.
	r = e.get("6", alice)
	e.want(r, http.StatusOK, "userproxy; hit; ttl=60")
}

func TestPassthrough(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	r := e.do(http.MethodPost, "/api/users", alice, `{"username":"new.agent","first_name":"New"}`)
	e.want(r, http.StatusCreated, "userproxy; fwd=method")
	r = e.do(http.MethodGet, "/api/desks", alice, "")
	e.want(r, http.StatusNotFound, "userproxy; fwd=bypass")
	if got := e.requests("bypass", "201"); got != 1 {
		t.Errorf(`requests_total{cache="bypass",code="201"}: got %v, want 1`, got)
	}
}
