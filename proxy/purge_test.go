package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
)

const adminToken = "admin-token-0123456789"

// adminServer serves e's purge endpoints behind an Admin, as main wires them.
func adminServer(t *testing.T, e *env, token string) *httptest.Server {
	t.Helper()
	a := proxy.NewAdmin(proxy.AdminOptions{Gatherer: e.reg, Purge: e.h.Purge(token)})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv
}

func adminDo(t *testing.T, srv *httptest.Server, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPurgeRequiresConfiguredToken(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{})
	disabled := adminServer(t, e, "")
	code, body := adminDo(t, disabled, http.MethodDelete, "/admin/cache/users/1", "anything")
	if code != http.StatusForbidden || !strings.Contains(body, "-admin-token") {
		t.Errorf("purge without a configured token: got %d %q, want 403 saying how to enable it", code, body)
	}
	srv := adminServer(t, e, adminToken)
	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", http.MethodDelete, "/admin/cache/users/1", "", http.StatusUnauthorized},
		{"wrong token", http.MethodDelete, "/admin/cache/users/1", "admin-token-0123456780", http.StatusUnauthorized},
		{"token prefix", http.MethodDelete, "/admin/cache/users/1", "admin-token", http.StatusUnauthorized},
		{"wrong method", http.MethodGet, "/admin/cache/users/1", adminToken, http.StatusMethodNotAllowed},
		{"bad id", http.MethodDelete, "/admin/cache/users/a%2Fb", adminToken, http.StatusBadRequest},
		{"unknown path", http.MethodDelete, "/admin/cache/desks/1", adminToken, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := adminDo(t, srv, tc.method, tc.path, tc.token); code != tc.want {
				t.Errorf("got %d %q, want %d", code, body, tc.want)
			}
		})
	}
}

func TestPurgeUserDropsEveryScope(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		srv := adminServer(t, e, adminToken)
		e.get("40", alice)
		e.get("40", bob)
		e.get("41", alice)
		if code, body := adminDo(t, srv, http.MethodDelete, "/admin/cache/users/40", adminToken); code != http.StatusOK {
			t.Fatalf("purge: got %d %q, want 200", code, body)
		}
		for _, cred := range []struct {
			name string
			r    response
		}{{"alice", e.get("40", alice)}, {"bob", e.get("40", bob)}} {
			e.want(cred.r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		}
		e.want(e.get("41", alice), http.StatusOK, "userproxy; hit; ttl=60") // others untouched
		if got := testutil.ToFloat64(e.m.Invalidations.WithLabelValues("admin")); got != 1 {
			t.Errorf(`invalidations_total{source="admin"}: got %v, want 1`, got)
		}
	})
}

func TestPurgeAll(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{engine: func(o *readthrough.Options) { o.FillTimeout = 50 * time.Millisecond }})
		srv := adminServer(t, e, adminToken)
		for i := 1; i <= 10; i++ {
			e.get(itoa(i), alice)
			e.get(itoa(i), bob)
		}
		if code, body := adminDo(t, srv, http.MethodDelete, "/admin/cache", adminToken); code != http.StatusOK {
			t.Fatalf("purge all: got %d %q, want 200", code, body)
		}
		for i := 1; i <= 10; i++ {
			for _, cred := range []struct {
				name string
				r    response
			}{{"alice", e.get(itoa(i), alice)}, {"bob", e.get(itoa(i), bob)}} {
				if cs := cred.r.header.Get("Cache-Status"); !strings.Contains(cs, "fwd=uri-miss") {
					t.Errorf("user %d for %s after purge all: Cache-Status %q, want a miss", i, cred.name, cs)
				}
			}
		}
		if got := testutil.ToFloat64(e.m.Invalidations.WithLabelValues("admin_all")); got != 1 {
			t.Errorf(`invalidations_total{source="admin_all"}: got %v, want 1`, got)
		}
	})
}

// TestInvalidationRetriedAfterCacheOutage: a write made while Redis is
// unreachable must still drop the user's entries once Redis is back — and
// the old entry must not be served in between.
func TestInvalidationRetriedAfterCacheOutage(t *testing.T) {
	mr := miniredis.RunT(t)
	e := newEnv(t, redisStore(t, "redis://"+mr.Addr()), envOptions{})
	old := e.get("50", alice).body
	e.get("50", bob)
	mr.Close()
	if r := e.do(http.MethodPut, "/api/users/50", alice, `{"first_name":"DuringOutage"}`); r.status != http.StatusOK {
		t.Fatalf("PUT during the outage: got %d %q", r.status, r.body)
	}
	if err := mr.Restart(); err != nil { // the old entry is still in Redis
		t.Fatal(err)
	}
	r := e.get("50", alice)
	if r.body == old {
		t.Fatalf("after the outage: served the pre-write body (%s)", r.header.Get("Cache-Status"))
	}
	testkit.Await(t, "the retried invalidation", func() bool {
		return testutil.ToFloat64(e.m.Invalidations.WithLabelValues("retry")) == 1
	})
	r = e.get("50", bob)
	e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored") // bob's pre-write entry is gone
}
