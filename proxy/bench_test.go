package proxy_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
)

// discardWriter is a ResponseWriter that keeps nothing, so a benchmark
// measures the handler rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// staticUpstream answers every id with the same user body, in process.
type staticUpstream struct{ body []byte }

func (u staticUpstream) Fetch(_ context.Context, _ string, _ upstream.Credentials) (*upstream.Response, error) {
	return &upstream.Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: u.body}, nil
}

func (staticUpstream) RetryAfter() time.Duration { return 0 }

var benchBody = []byte(`[{"id":"1","username":"olivia.rossi1","email":"olivia.rossi@acme.example","registration_password":"rp19a7e0012e5c","is_active":"1","is_clockedin":"1","sip_uri":"sip:10001@acme.sip.example","auto_dial":"1","is_deleted":"0","use_extended_ip_acl":"0","user_route_caller_id":"+15550109641","timezone_id":"35","use_webrtc":"1","first_name":"Olivia","last_name":"Rossi","virtual_extension":"10001","default_language":"fr","max_session_time":"14400","max_concurrent_sessions":"3","twofa_type":"none","member_all_desks":"0","desks":[{"id":"9","name":"Support"}],"roles":{"1":"Administrator"},"groups":[{"id":"12","name":"Evening shift"}]}]`)

func benchHandler(b testing.TB, store readthrough.Store) *proxy.Handler {
	b.Helper()
	eng, err := readthrough.New(readthrough.Options{Store: store, Upstream: staticUpstream{benchBody}, KeySecret: []byte("bench-secret-0123456789")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	h, err := proxy.New(proxy.Options{Engine: eng})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

func benchRequest(id string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://proxy/api/users/"+id, nil)
	r.SetBasicAuth("demo", "demo-password")
	return r
}

// benchHits measures the cache-hit path: one id, warm cache.
func benchHits(b *testing.B, h http.Handler) {
	req := benchRequest("1")
	w := &discardWriter{h: http.Header{}}
	warm(b, func() string { clear(w.h); h.ServeHTTP(w, req); return w.h.Get("Cache-Status") })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.status != 200 || w.h.Get("Cache-Status")[:15] != "userproxy; hit;" {
		b.Fatalf("last answer: %d %q, want a hit", w.status, w.h.Get("Cache-Status"))
	}
}

func BenchmarkHitMemory(b *testing.B) {
	benchHits(b, benchHandler(b, cache.NewMemory(cache.MemoryOptions{})))
}

func BenchmarkHitRedis(b *testing.B) {
	srv := redistest.Start(b)
	client, err := cache.NewUniversalClient(srv.URL(), cache.ClientOptions{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	benchHits(b, benchHandler(b, cache.NewRedis(client, cache.RedisOptions{})))
}

// tierStore is the in-process tier in front of a private redis-server.
func tierStore(b *testing.B) *cache.Tiered {
	b.Helper()
	srv := redistest.Start(b)
	client, err := cache.NewUniversalClient(srv.URL(), cache.ClientOptions{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	tier, err := cache.NewTiered(cache.NewRedis(client, cache.RedisOptions{}), cache.L1Options{})
	if err != nil {
		b.Fatal(err)
	}
	// The tier answers only while its invalidation feed holds a lease:
	// run the feed, as the binary does, and wait for the first one.
	testkit.Go(b, func(ctx context.Context) { tier.Run(ctx) })
	testkit.WaitFor(b, 5*time.Second, "the tier's first lease", func() bool { return tier.Stats().LeaseValid })
	return tier
}

// BenchmarkHitL1 is the hit path with the in-process tier in front of a
// real Redis: the hot path of a production replica.
func BenchmarkHitL1(b *testing.B) {
	benchHits(b, benchHandler(b, tierStore(b)))
}

// BenchmarkMissMemory measures the proxy's own work on a miss (lookup,
// coalescing, JSON check, store) with an in-process upstream.
func BenchmarkMissMemory(b *testing.B) {
	h := benchHandler(b, cache.NewMemory(cache.MemoryOptions{MaxBytes: 1 << 30}))
	w := &discardWriter{h: http.Header{}}
	reqs := make([]*http.Request, b.N+1)
	for i := range reqs {
		reqs[i] = benchRequest(strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, reqs[i])
	}
	b.StopTimer()
	if w.status != 200 {
		b.Fatalf("last answer: %d, want 200", w.status)
	}
}

// BenchmarkHitL1Wrapped is BenchmarkHitL1 with the middleware main puts in
// front of the handler (request ids and trace context, the access log off):
// what one production hit costs in the proxy's own code.
func BenchmarkHitL1Wrapped(b *testing.B) {
	benchHits(b, proxy.WithRequestID(proxy.AccessLog(benchHandler(b, tierStore(b)), proxy.AccessLogOptions{})))
}

// benchFrontHits measures a hit through Front, the handler the binary
// serves: request parsing aside, everything a production hit costs in the
// proxy's code, request id and header copies into fasthttp included.
// frontHitRequest is a GET of a user on Front, and the handler that serves it.
func frontHitRequest(h *proxy.Handler) (fasthttp.RequestHandler, *fasthttp.RequestCtx) {
	c := &fasthttp.RequestCtx{}
	c.Request.Header.SetMethod(http.MethodGet)
	c.Request.SetRequestURI("/api/users/1")
	c.Request.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("demo:demo-password")))
	return h.Front(proxy.FrontOptions{}), c
}

// warm repeats a request (serve, which returns its Cache-Status) until it
// is a hit: a miss answers before its store, and requests in between join
// its fill.
func warm(tb testing.TB, serve func() string) {
	tb.Helper()
	for range 100000 {
		if strings.HasPrefix(serve(), "userproxy; hit;") {
			return
		}
		runtime.Gosched()
	}
	tb.Fatal("no hit after 100000 requests")
}

// warmFront is warm for a fasthttp request.
func warmFront(tb testing.TB, serve fasthttp.RequestHandler, c *fasthttp.RequestCtx) {
	tb.Helper()
	warm(tb, func() string {
		c.Response.Reset()
		serve(c)
		return string(c.Response.Header.Peek("Cache-Status"))
	})
}

func benchFrontHits(b *testing.B, h *proxy.Handler) {
	serve, c := frontHitRequest(h)
	warmFront(b, serve, c)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.Response.Reset()
		serve(c)
	}
	b.StopTimer()
	if st := string(c.Response.Header.Peek("Cache-Status")); c.Response.StatusCode() != 200 || !strings.HasPrefix(st, "userproxy; hit;") {
		b.Fatalf("last answer: %d %q, want a hit", c.Response.StatusCode(), st)
	}
}

func BenchmarkHitFrontMemory(b *testing.B) {
	benchFrontHits(b, benchHandler(b, cache.NewMemory(cache.MemoryOptions{})))
}

// BenchmarkHitFrontL1 is the production hot path: Front, with the
// in-process tier in front of a real Redis.
func BenchmarkHitFrontL1(b *testing.B) {
	benchFrontHits(b, benchHandler(b, tierStore(b)))
}
