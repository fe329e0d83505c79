package proxy_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/proxy/readthrough"
)

// countingStore is a readthrough.Store that counts every call before passing it
// on, so a test can prove a request never reached the cache.
type countingStore struct {
	next                    readthrough.Store
	gets, sets, invalidates atomic.Int64
	upstream                *upstreamCounter // set by hostileEnv
}

func (s *countingStore) Get(ctx context.Context, k cache.Key) (cache.Entry, uint64, bool, error) {
	s.gets.Add(1)
	return s.next.Get(ctx, k)
}

func (s *countingStore) Set(ctx context.Context, k cache.Key, e cache.Entry, ttl time.Duration, gen uint64) error {
	s.sets.Add(1)
	return s.next.Set(ctx, k, e, ttl, gen)
}

func (s *countingStore) Invalidate(ctx context.Context, id string) error {
	s.invalidates.Add(1)
	return s.next.Invalidate(ctx, id)
}

// calls is the number of store calls of any kind so far.
func (s *countingStore) calls() int64 { return s.gets.Load() + s.sets.Load() + s.invalidates.Load() }

// upstreamCounter counts every request that reaches the upstream's HTTP
// server, on any path (the fake's own counters see only its user routes).
type upstreamCounter struct {
	next http.Handler
	n    atomic.Int64
}

func (c *upstreamCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.next.ServeHTTP(w, r)
}

// hostileEnv is a proxy on a counting memory store, in front of a counted
// upstream.
func hostileEnv(t *testing.T) (*env, *countingStore) {
	t.Helper()
	cs := &countingStore{next: cache.NewMemory(cache.MemoryOptions{})}
	cs.upstream = &upstreamCounter{}
	e := newEnv(t, cs, envOptions{wrapUpstream: func(next http.Handler) http.Handler {
		cs.upstream.next = next
		return cs.upstream
	}})
	return e, cs
}

// footprint is what a request may have touched: the store, the upstream's
// user reads and writes, and the upstream at all.
type footprint struct{ store, reads, writes, upstream int64 }

func footprintOf(e *env, cs *countingStore) footprint {
	return footprint{store: cs.calls(), reads: e.up.Requests(), writes: e.up.Writes(), upstream: cs.upstream.n.Load()}
}

// wantUntouched fails t if anything reached the store or the upstream since
// before was taken.
func wantUntouched(t *testing.T, e *env, cs *countingStore, before footprint) {
	t.Helper()
	if got := footprintOf(e, cs); got != before {
		t.Errorf("store calls, upstream user reads, user writes, all requests: got %+v, want %+v (the request must stop at the proxy)", got, before)
	}
}

// rawDo sends one request over a fresh TCP connection exactly as given:
// request line, header lines ("Name: value", possibly repeated) and body.
// Nothing normalises the target or merges the headers, as net/http's client
// would.
func rawDo(t *testing.T, srv *testServer, method, target string, headers []string, body string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response to %s %.60q: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(rb)}
}

// basicHeader is an Authorization header line with Basic credentials.
func basicHeader(userPass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

// hostileIDs are request targets whose id must be refused before any I/O.
// Each is sent raw, so the server sees these exact bytes.
var hostileIDs = []struct{ name, target string }{
	{"dotdot", "/api/users/.."},
	{"dot", "/api/users/."},
	{"dotdot traversal", "/api/users/../users/1"},
	{"dotdot to the fake's controls", "/api/users/../../_fake/stats"},
	{"encoded dotdot", "/api/users/%2e%2e"},
	{"encoded dotdot upper case", "/api/users/%2E%2E"},
	{"encoded dot", "/api/users/%2e"},
	{"encoded dotdot slash", "/api/users/%2e%2e%2f1"},
	{"double encoded dotdot", "/api/users/%252e%252e"},
	{"encoded slash", "/api/users/1%2F2"},
	{"encoded slash alone", "/api/users/%2F"},
	{"encoded backslash", "/api/users/..%5C1"},
	{"encoded NUL", "/api/users/%00"},
	{"encoded NUL after id", "/api/users/1%00"},
	{"encoded CRLF", "/api/users/1%0D%0ASet-Cookie:%20x=y"},
	{"encoded space", "/api/users/1%20"},
	{"raw UTF-8", "/api/users/caf\u00e9"},
	{"encoded UTF-8", "/api/users/caf%C3%A9"},
	{"raw fullwidth digit", "/api/users/\uff11"},
	{"encoded fullwidth digit", "/api/users/%EF%BC%91"},
	{"encoded right-to-left override", "/api/users/1%E2%80%AE"},
	{"encoded invalid UTF-8", "/api/users/%FF%FE"},
	{"10k characters", "/api/users/" + strings.Repeat("1", 10_000)},
	{"10k characters encoded", "/api/users/" + strings.Repeat("%41", 3_334)},
	{"65 characters", "/api/users/" + strings.Repeat("9", 65)},
	{"empty", "/api/users/"},
	{"trailing slash", "/api/users/1/"},
	{"semicolon", "/api/users/1;drop"},
	{"plus", "/api/users/1+1"},
	{"absolute form with encoded dotdot", "http://proxy.test/api/users/%2e%2e"},
}

func TestHostileIDsStopAtTheProxy(t *testing.T) {
	e, cs := hostileEnv(t)
	valid := basicHeader(alice.Username + ":" + alice.Password)
	for _, tc := range hostileIDs {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			r := rawDo(t, e.srv, http.MethodGet, tc.target, []string{valid}, "")
			wantJSONError(t, r, http.StatusBadRequest)
			wantNoEcho(t, r, []string{alice.Password, strings.TrimPrefix(valid, "Authorization: Basic ")})
			wantUntouched(t, e, cs, before)
		})
	}
	// The counters can see a request that does get through.
	before := footprintOf(e, cs)
	if r := rawDo(t, e.srv, http.MethodGet, "/api/users/1", []string{valid}, ""); r.status != http.StatusOK {
		t.Fatalf("control request: got %d %q, want 200", r.status, r.body)
	}
	if got := footprintOf(e, cs); got.store == before.store || got.reads == before.reads {
		t.Errorf("control request: footprint %+v after %+v, want store and upstream reached", got, before)
	}
}

// TestInvalidIDCacheStatus: the README promises "userproxy;
// detail=invalid-id" on a refused id, like every other user lookup answer.
func TestInvalidIDCacheStatus(t *testing.T) {
	e, _ := hostileEnv(t)
	for _, target := range []string{"/api/users/%2e%2e", "/api/users/" + strings.Repeat("9", 65)} {
		r := rawDo(t, e.srv, http.MethodGet, target, []string{basicHeader(alice.Username + ":" + alice.Password)}, "")
		if got, want := r.header.Get("Cache-Status"), "userproxy; detail=invalid-id"; got != want {
			t.Errorf("%.40s: Cache-Status: got %q, want %q", target, got, want)
		}
	}
}

// TestMalformedRequestTargets: targets that are not valid HTTP at all are
// refused by net/http before the handler runs (400, text/plain, written by
// net/http itself). They must not reach the cache or the upstream either.
func TestMalformedRequestTargets(t *testing.T) {
	e, cs := hostileEnv(t)
	valid := basicHeader(alice.Username + ":" + alice.Password)
	for _, tc := range []struct{ name, target string }{
		{"bad escape", "/api/users/1%zz"},
		{"truncated escape", "/api/users/1%"},
		{"raw NUL", "/api/users/\x00"},
		{"raw control character", "/api/users/\x01"},
		{"raw DEL", "/api/users/\x7f"},
		{"raw tab", "/api/users/a\tb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			r := rawDo(t, e.srv, http.MethodGet, tc.target, []string{valid}, "")
			if r.status != http.StatusBadRequest {
				t.Errorf("got %d %q, want 400", r.status, r.body)
			}
			wantUntouched(t, e, cs, before)
		})
	}
}

// TestEncodedSlashInRoutePrefix: an encoded slash or dot segment in the
// route itself ("/api/users%2F1") does not match /api/users/{id}, so the
// request falls to pass-through, where an upstream that decodes the path
// (net/http does; so do many frameworks) sees /api/users/1 — an uncached,
// unvalidated read — or a traversal to another endpoint. Such a target must
// be refused like a hostile id.
func TestEncodedSlashInRoutePrefix(t *testing.T) {
	e, cs := hostileEnv(t)
	valid := basicHeader(alice.Username + ":" + alice.Password)
	for _, tc := range []struct{ name, target string }{
		{"encoded slash before the id", "/api/users%2F1"},
		{"encoded slash, lower case", "/api/users%2f1"},
		{"every slash encoded", "/api%2Fusers%2F1"},
		{"encoded traversal", "/api/users%2f..%2f..%2f_fake%2fstats"},
		{"encoded dotdot segment", "/api/%2e%2e/api/users/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			r := rawDo(t, e.srv, http.MethodGet, tc.target, []string{valid}, "")
			if r.status < 400 || r.status > 499 {
				t.Errorf("got %d (Cache-Status %q, body %.60q), want a 4xx", r.status, r.header.Get("Cache-Status"), r.body)
			}
			wantUntouched(t, e, cs, before)
		})
	}
}

// TestEmptySegmentsInRoute: an empty segment ("/api//users/1") does not
// match /api/users/{id} either, and most front servers merge slashes
// (nginx's merge_slashes is on by default), so upstream it is the user
// route — an uncached read whose id the proxy never checked
// ("/api//users/1'--"). It belongs with the encoded slashes and dot
// segments that safePath already refuses.
func TestEmptySegmentsInRoute(t *testing.T) {
	e, cs := hostileEnv(t)
	valid := basicHeader(alice.Username + ":" + alice.Password)
	for _, tc := range []struct{ name, method, target string }{
		{"double slash inside", http.MethodGet, "/api//users/1"},
		{"double slash first", http.MethodGet, "//api/users/1"},
		{"unchecked id behind a double slash", http.MethodGet, "/api//users/1%27--"},
		{"write behind a double slash", http.MethodPut, "/api//users/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := footprintOf(e, cs)
			body := ""
			if tc.method == http.MethodPut {
				body = `{"first_name":"Mallory"}`
			}
			r := rawDo(t, e.srv, tc.method, tc.target, []string{valid}, body)
			if r.status < 400 || r.status > 499 {
				t.Errorf("got %d (Cache-Status %q), want a 4xx", r.status, r.header.Get("Cache-Status"))
			}
			wantUntouched(t, e, cs, before)
		})
	}
}

// TestHostileIDsOtherMethods: HEAD and the writes (which pass through to the
// upstream and invalidate) refuse the same ids.
func TestHostileIDsOtherMethods(t *testing.T) {
	e, cs := hostileEnv(t)
	valid := basicHeader(alice.Username + ":" + alice.Password)
	for _, method := range []string{http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		for _, target := range []string{"/api/users/..", "/api/users/%2e%2e", "/api/users/1%2F..%2F2", "/api/users/%00", "/api/users/caf%C3%A9", "/api/users/"} {
			t.Run(method+" "+target, func(t *testing.T) {
				before := footprintOf(e, cs)
				body := ""
				if method == http.MethodPut || method == http.MethodPatch {
					body = `{"first_name":"Mallory"}`
				}
				r := rawDo(t, e.srv, method, target, []string{valid}, body)
				if method == http.MethodHead {
					if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/json" {
						t.Errorf("got %d %q, want 400 application/json", r.status, r.header.Get("Content-Type"))
					}
				} else {
					wantJSONError(t, r, http.StatusBadRequest)
				}
				wantUntouched(t, e, cs, before)
			})
		}
	}
}
