package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/proxy/readthrough"
)

// withUpstreamHeaders makes the fake upstream send extra header fields with
// every answer: end-to-end ones the proxy must replay, and ones it must not.
func withUpstreamHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Ratelimit-Remaining", "41")
		h.Set("Cache-Control", "private, max-age=30")
		h.Set("Last-Modified", "Sat, 05 Dec 2026 10:00:00 GMT")
		h.Add("X-Tenant-Trace", "a")
		h.Add("X-Tenant-Trace", "b")
		h.Set("X-Internal-Host", "db-7") // named in DropHeaders
		h.Set("Set-Cookie", "session=secret")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "1") // hop-by-hop: named in Connection
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Age", "999")
		h.Set("Cache-Status", "upstream; hit")
		next.ServeHTTP(w, r)
	})
}

// TestUpstreamHeadersReplayed: the upstream's end-to-end fields come back on
// the miss and on every hit, on every store and both fronts; hop-by-hop
// fields, cookies, the proxy's own fields and the operator's deny-list never.
func TestUpstreamHeadersReplayed(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{
			wrapUpstream: withUpstreamHeaders,
			engine:       func(o *readthrough.Options) { o.DropHeaders = []string{"x-internal-host"} },
		})
		miss := e.get("3", alice)
		hit := e.get("3", alice)
		e.want(hit, http.StatusOK, "userproxy; hit; ttl=60")
		for name, r := range map[string]response{"miss": miss, "hit": hit} {
			if r.status != http.StatusOK || r.body != e.userBody(alice, "3") {
				t.Fatalf("%s: got %d %q, want the user", name, r.status, r.body)
			}
			for field, want := range map[string]string{
				"X-Ratelimit-Remaining": "41",
				"Cache-Control":         "private, max-age=30",
				"Last-Modified":         "Sat, 05 Dec 2026 10:00:00 GMT",
				"X-Tenant-Trace":        "a,b",
			} {
				if got := strings.Join(r.header.Values(field), ","); got != want {
					t.Errorf("%s: %s: got %q, want %q", name, field, got, want)
				}
			}
			for _, field := range []string{"X-Internal-Host", "Set-Cookie", "X-Hop", "Keep-Alive"} {
				if v := r.header.Values(field); len(v) > 0 {
					t.Errorf("%s: %s replayed (%q), want it dropped", name, field, v)
				}
			}
			if got := r.header.Values("Cache-Status"); len(got) != 1 || !strings.HasPrefix(got[0], "userproxy;") {
				t.Errorf("%s: Cache-Status %q, want only the proxy's", name, got)
			}
			if got := r.header.Values("Age"); len(got) != 1 || got[0] == "999" {
				t.Errorf("%s: Age %q, want only the proxy's", name, got)
			}
			if r.header.Get("Etag") == "" {
				t.Errorf("%s: no ETag, want one derived from the body", name)
			}
		}
		if miss.header.Get("Etag") != hit.header.Get("Etag") {
			t.Errorf("ETag: miss %q, hit %q, want the same", miss.header.Get("Etag"), hit.header.Get("Etag"))
		}
	})
}

// TestIfNoneMatch: a request whose If-None-Match matches the entry's
// validator gets a 304 with no body, on a hit and on a miss; a different
// tag gets the whole answer; another scope's answer is never a 304 for it
// unless the bodies are the same bytes.
func TestIfNoneMatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{})
		first := e.get("4", alice)
		etag := first.header.Get("Etag")
		if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) {
			t.Fatalf("ETag %q, want a strong entity tag", etag)
		}
		for _, tc := range []struct {
			name, inm string
			status    int
		}{
			{"same tag", etag, http.StatusNotModified},
			{"weak form", "W/" + etag, http.StatusNotModified},
			{"in a list", `"other", ` + etag, http.StatusNotModified},
			{"any", "*", http.StatusNotModified},
			{"other tag", `"other"`, http.StatusOK},
			{"malformed", strings.Trim(etag, `"`), http.StatusOK},
		} {
			r := e.getWith("4", alice, "If-None-Match", tc.inm)
			if r.status != tc.status {
				t.Errorf("%s: got %d, want %d", tc.name, r.status, tc.status)
			}
			if tc.status == http.StatusNotModified {
				if r.body != "" {
					t.Errorf("%s: 304 with body %q, want none", tc.name, r.body)
				}
				if got := r.header.Get("Etag"); got != etag {
					t.Errorf("%s: 304 with ETag %q, want %q", tc.name, got, etag)
				}
				if !strings.HasPrefix(r.header.Get("Cache-Status"), "userproxy; hit;") {
					t.Errorf("%s: Cache-Status %q, want a hit", tc.name, r.header.Get("Cache-Status"))
				}
			} else if r.body != first.body {
				t.Errorf("%s: body %q, want the user", tc.name, r.body)
			}
		}
		// A miss whose answer matches is a 304 too.
		r := e.getWith("5", alice, "If-None-Match", "*")
		if r.status != http.StatusNotModified || !strings.HasPrefix(r.header.Get("Cache-Status"), "userproxy; fwd=uri-miss") {
			t.Errorf("miss with If-None-Match *: got %d %q, want a 304 miss", r.status, r.header.Get("Cache-Status"))
		}
		// A 404 is never "not modified".
		if r := e.getWith("99999", alice, "If-None-Match", "*"); r.status != http.StatusNotFound {
			t.Errorf("404 with If-None-Match *: got %d, want 404", r.status)
		}
		if got := e.requests("hit", "304"); got < 4 {
			t.Errorf(`userproxy_requests_total{cache="hit",code="304"}: got %v, want at least 4`, got)
		}
	})
}

// TestUpstreamETagKept: the upstream's own validator is the one replayed and
// matched, not a derived one.
func TestUpstreamETagKept(t *testing.T) {
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{wrapUpstream: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `W/"v42"`)
			next.ServeHTTP(w, r)
		})
	}})
	if r := e.get("6", alice); r.header.Get("Etag") != `W/"v42"` {
		t.Fatalf("ETag: got %q, want the upstream's", r.header.Get("Etag"))
	}
	if r := e.getWith("6", alice, "If-None-Match", `"v42"`); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match matching the upstream's tag: got %d, want 304", r.status)
	}
}
