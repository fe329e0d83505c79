package proxy_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/proxy"
)

// hostileAuth are Authorization headers (zero, one or several lines) that
// must be refused locally. Each carries distinctive text that the error body
// must not echo.
func hostileAuth() []struct {
	name    string
	headers []string
	secrets []string // must not appear in the answer
} {
	const user, pass = "hostile-user-K7", "h0stile-pass-M3"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	good := user + ":" + pass
	return []struct {
		name    string
		headers []string
		secrets []string
	}{
		{"missing", nil, nil},
		{"empty", []string{"Authorization: "}, nil},
		{"bearer", []string{"Authorization: Bearer hostile-token-Q9"}, []string{"hostile-token-Q9"}},
		{"digest", []string{`Authorization: Digest username="` + user + `", realm="x", nonce="n", uri="/api/users/1", response="r"`}, []string{user}},
		{"scheme only", []string{"Authorization: Basic"}, nil},
		{"scheme and space", []string{"Authorization: Basic "}, nil},
		{"scheme glued to the token", []string{"Authorization: Basic" + b64(good)}, []string{b64(good), user, pass}},
		{"not base64", []string{"Authorization: Basic " + user + ":" + pass}, []string{user, pass}},
		{"base64 without padding", []string{"Authorization: Basic " + base64.RawStdEncoding.EncodeToString([]byte(good+"x"))}, []string{user, pass}},
		{"url-safe base64", []string{"Authorization: Basic " + base64.URLEncoding.EncodeToString([]byte(user+":\xfb\xff"+pass))}, []string{user, pass}},
		{"two credentials in one header", []string{"Authorization: Basic " + b64(good) + ", Basic " + b64(good)}, []string{b64(good), user, pass}},
		{"no colon", []string{basicHeader(user + pass)}, []string{user, pass}},
		{"empty username", []string{basicHeader(":" + pass)}, []string{pass}},
		{"colon only", []string{basicHeader(":")}, nil},
		{"2 KiB", []string{basicHeader(user + ":" + pass + strings.Repeat("Z", 2<<10))}, []string{user, pass, "ZZZZZZZZ"}},
		{"8 KiB (over our 1 KiB, under the server's 16 KiB header limit)", []string{basicHeader(user + ":" + pass + strings.Repeat("Z", 8<<10))}, []string{user, pass, "ZZZZZZZZ"}},
	}
}

func TestHostileAuthorizationStopsAtTheProxy(t *testing.T) {
	e, cs := hostileEnv(t)
	for _, tc := range hostileAuth() {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			r := rawDo(t, e.srv, http.MethodGet, "/api/users/1", tc.headers, "")
			wantJSONError(t, r, http.StatusUnauthorized)
			if got := r.header.Get("Www-Authenticate"); !strings.HasPrefix(got, "Basic ") {
				t.Errorf("WWW-Authenticate: got %q, want a Basic challenge", got)
			}
			if got := r.header.Get("Cache-Status"); got != "userproxy; detail=bad-credentials" {
				t.Errorf("Cache-Status: got %q, want %q", got, "userproxy; detail=bad-credentials")
			}
			wantNoEcho(t, r, tc.secrets)
			wantUntouched(t, e, cs, before)
		})
	}
}

// TestMultipleAuthorizationHeaders: Authorization is a singleton field (RFC
// 9110 §11.6.2 defines no list syntax for it), so a request with several is
// malformed. Taking the first and ignoring the rest would let a client (or a
// confused intermediary that reads the last one) disagree with the proxy
// about whose request this is; the proxy must refuse it, before any I/O.
func TestMultipleAuthorizationHeaders(t *testing.T) {
	e, cs := hostileEnv(t)
	a := basicHeader(alice.Username + ":" + alice.Password)
	b := basicHeader(bob.Username + ":" + bob.Password)
	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"same credentials twice", []string{a, a}},
		{"two tenants", []string{a, b}},
		{"two tenants, other order", []string{b, a}},
		{"valid then garbage", []string{a, "Authorization: Basic !!!"}},
		{"bearer then valid", []string{"Authorization: Bearer hostile-token-Q9", a}},
		{"valid then empty", []string{a, "Authorization: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			r := rawDo(t, e.srv, http.MethodGet, "/api/users/1", tc.headers, "")
			if r.status < 400 || r.status > 499 {
				t.Fatalf("got %d (Cache-Status %q), want a 4xx: several Authorization headers are ambiguous",
					r.status, r.header.Get("Cache-Status"))
			}
			wantJSONError(t, r, r.status)
			wantNoEcho(t, r, []string{alice.Password, bob.Password, "hostile-token-Q9"})
			wantUntouched(t, e, cs, before)
		})
	}
}

// TestAuthorizationPastMaxHeaderBytes: the front server bounds the request
// line and header fields (16 KiB);
// an Authorization header past that is refused with the proxy's JSON 431
// before the handler runs, never reaching the cache or the upstream.
func TestAuthorizationPastMaxHeaderBytes(t *testing.T) {
	e, cs := hostileEnv(t)
	srv := serveFront(t, e.h.Front(proxy.FrontOptions{}))
	t.Cleanup(srv.Close)
	before := footprintOf(e, cs)
	r := rawDo(t, srv, http.MethodGet, "/api/users/1", []string{basicHeader("hostile-user-K7:" + strings.Repeat("Z", 80<<10))}, "")
	wantJSONError(t, r, http.StatusRequestHeaderFieldsTooLarge)
	wantNoEcho(t, r, []string{"hostile-user-K7", "ZZZZZZZZ"})
	wantUntouched(t, e, cs, before)
}

// wantNoEcho fails t if any of secrets appears in r's body or headers.
func wantNoEcho(t *testing.T, r response, secrets []string) {
	t.Helper()
	var all strings.Builder
	all.WriteString(r.body)
	for k, vs := range r.header {
		all.WriteString("\n" + k + ": " + strings.Join(vs, ", "))
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(all.String(), s) {
			t.Errorf("the answer echoes %.40q: %.300q", s, all.String())
		}
	}
}
