package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// stampedeOnHeldFill starts a request for id, holds its upstream call (the
// fill), sends n more requests for id while it is held, then releases it
// once the proxy has begun to serve them all. It returns the first
// request's answer and the others'. A request that reaches the fill after
// it ended is answered some other way (a hit, say); the caller tells them
// apart by Cache-Status.
func stampedeOnHeldFill(t *testing.T, e *env, hold *holdFirstGet, id string, n int) (response, []response) {
	t.Helper()
	arrived := countArrivals(t, e)
	first := make(chan response, 1)
	go func() { first <- e.get(id, alice) }()
	<-hold.fetched // the fill is at the upstream
	results := make([]response, n)
	var done sync.WaitGroup
	for i := range n {
		done.Go(func() { results[i] = e.get(id, alice) })
	}
	testkit.Await(t, "the proxy to begin serving every request", func() bool { return arrived.Load() == int64(1+n) })
	close(hold.release)
	done.Wait()
	return <-first, results
}

// countArrivals points e at a server of its own for e's handler, on the
// front under test, that counts the requests it has begun to serve.
func countArrivals(t *testing.T, e *env) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	var srv *testServer
	if frontUnderTest() == "nethttp" {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			e.h.ServeHTTP(w, r)
		}))
		srv = &testServer{URL: hs.URL, Listener: hs.Listener, client: hs.Client(), close: hs.Close}
	} else {
		front := e.h.Front(proxy.FrontOptions{})
		srv = serveFront(t, func(c *fasthttp.RequestCtx) {
			n.Add(1)
			front(c)
		})
	}
	t.Cleanup(srv.Close)
	e.srv = srv
	return &n
}

// TestStampedeReadsTheCacheOnce: requests for a key whose miss fill is
// running wait on it without reading the cache, which cannot have the
// answer yet. A stampede costs one cache read and one upstream call, not a
// read per request queued on Redis connections while the fill runs.
func TestStampedeReadsTheCacheOnce(t *testing.T) {
	cs := &countingStore{next: cache.NewMemory(cache.MemoryOptions{})}
	hold := &holdFirstGet{id: "42", fetched: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, cs, envOptions{wrapUpstream: func(next http.Handler) http.Handler { hold.next = next; return hold }})
	want := e.userBody(alice, "42")

	const n = 50
	lead, results := stampedeOnHeldFill(t, e, hold, "42", n)
	e.want(lead, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
	waited := 0
	for i, r := range results {
		if r.status != http.StatusOK || r.body != want {
			t.Fatalf("request %d: got %d %q, want 200 with the user", i, r.status, r.body)
		}
		if strings.Contains(r.header.Get("Cache-Status"), "collapsed") {
			waited++
		}
	}
	if waited == 0 {
		t.Fatal("no request waited on the fill; the stampede did not overlap")
	}
	if got := e.up.RequestsFor("42"); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
	// The leader reads once (no fill of the key ended between its lookup
	// and its fill, so the fill does not re-read); a request that came
	// after the fill reads once and hits; one that waited on the fill
	// reads nothing.
	if got, want := cs.gets.Load(), int64(1+n-waited); got != want {
		t.Errorf("cache reads: got %d, want %d (%d of %d requests waited on the fill)", got, want, waited, n)
	}
}

// TestStampedeWaitersFallBackToStale: a request that waited on a miss fill
// without reading the cache still gets the stale-if-error copy when the
// fill fails. It reads the cache for it only then: what the fill's leader
// read may predate a write that completed before this request was sent.
func TestStampedeWaitersFallBackToStale(t *testing.T) {
	cs := &countingStore{next: cache.NewMemory(cache.MemoryOptions{})}
	hold := &holdFirstGet{id: "12", fetched: make(chan struct{}), release: make(chan struct{})}
	var armed atomic.Bool // the first fill, which stores the copy, is not held
	e := freshEnv(t, cs, envOptions{
		breaker: upstream.BreakerOptions{ConsecutiveFailures: 100},
		wrapUpstream: func(next http.Handler) http.Handler {
			hold.next = next
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if armed.Load() {
					hold.ServeHTTP(w, r)
				} else {
					next.ServeHTTP(w, r)
				}
			})
		},
	})
	old := e.get("12", alice).body
	e.clock.Advance(3 * time.Minute) // past stale-while-revalidate, within stale-if-error
	e.up.SetFault(upstreamtest.FaultServerError)
	e.up.ResetCounts()
	armed.Store(true)

	const n = 20
	lead, results := stampedeOnHeldFill(t, e, hold, "12", n)
	for i, r := range append([]response{lead}, results...) {
		if r.status != http.StatusOK || r.body != old || !strings.Contains(r.header.Get("Cache-Status"), "fwd=stale") {
			t.Fatalf("request %d: got %d %q (%s), want the stale copy", i, r.status, r.body, r.header.Get("Cache-Status"))
		}
	}
	// A request that came after the failed fill made a call of its own.
	if calls := e.up.RequestsFor("12"); calls >= int64(1+n) {
		t.Fatalf("upstream calls: got %d; no request waited on the held fill", calls)
	}
}

// TestFillRereadsWhenAFillEndedSinceTheLookup: without an in-process tier,
// a fill skips re-reading the store only if no fill of its key ended since
// its request's lookup. Here one did, and stored the answer: the late
// request's fill finds it instead of calling the upstream again.
func TestFillRereadsWhenAFillEndedSinceTheLookup(t *testing.T) {
	cs := &countingStore{next: cache.NewMemory(cache.MemoryOptions{})}
	ps := newPauseArmedGet(cs, "7")
	ps.armed.Store(true)
	e := newEnv(t, ps, envOptions{})
	admin := adminServer(t, e, adminToken)
	want := e.userBody(alice, "7")

	late := make(chan response, 1)
	go func() { late <- e.get("7", alice) }()
	<-ps.read // the late request's lookup has read the store: a miss
	// A purge of the user, so that the next request reads for itself: it
	// may not share a read begun before a purge (sharedReads). The user's
	// data does not change.
	if code, body := adminDo(t, admin, http.MethodDelete, "/admin/cache/users/7", adminToken); code != http.StatusOK {
		t.Fatalf("purge: got %d %q", code, body)
	}
	e.want(e.get("7", alice), http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
	close(ps.release)
	r := <-late
	if r.status != http.StatusOK || r.body != want {
		t.Fatalf("late request: got %d %q, want 200 with the user", r.status, r.body)
	}
	if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, "userproxy; hit") {
		t.Errorf("late request: Cache-Status %q, want a hit (the fill's re-read)", cs)
	}
	if got := e.up.RequestsFor("7"); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
	// Lookups: the late one's and the other's; then the late fill's re-read.
	if got := cs.gets.Load(); got != 3 {
		t.Errorf("cache reads: got %d, want 3", got)
	}
}

// TestRequestsAfterAWriteLeaveOlderFills: a fill that began before a write
// through this proxy (or a purge of the user) completed may carry the
// answer the write replaced. A request sent after the write must neither wait on that fill
// nor join its single flight: it makes its own, and gets the new answer
// while the old fill is still held at the upstream.
func TestRequestsAfterAWriteLeaveOlderFills(t *testing.T) {
	for _, how := range []string{"write", "purge user"} {
		t.Run(how, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
				hold := &holdFirstGet{id: "31", fetched: make(chan struct{}), release: make(chan struct{})}
				e := newEnv(envOptions{wrapUpstream: func(next http.Handler) http.Handler { hold.next = next; return hold }})
				leaveOlderFill(t, e, hold, how)
			})
		})
	}
}

// leaveOlderFill runs TestRequestsAfterAWriteLeaveOlderFills on e: a fill
// of user 31 held at the upstream, then how, then a new request.
func leaveOlderFill(t *testing.T, e *env, hold *holdFirstGet, how string) {
	t.Helper()
	admin := adminServer(t, e, adminToken)
	old := e.userBody(alice, "31")

	first := make(chan response, 1)
	go func() { first <- e.get("31", alice) }()
	<-hold.fetched // the old answer is on its way
	switch how {
	case "write":
		if r := e.do(http.MethodPut, "/api/users/31", alice, `{"first_name":"After"}`); r.status != http.StatusOK {
			t.Fatalf("PUT: got %d %q", r.status, r.body)
		}
	case "purge user":
		if code, body := adminDo(t, admin, http.MethodDelete, "/admin/cache/users/31", adminToken); code != http.StatusOK {
			t.Fatalf("purge: got %d %q", code, body)
		}
	}
	want := e.userBody(alice, "31")
	if how == "write" && want == old {
		t.Fatal("the write did not change the body; the test could not tell the answers apart")
	}

	r := getWhileHeld(t, e, "31", hold.release, "the request sent after the "+how+" waited on the fill begun before it")
	close(hold.release)
	if r.status != http.StatusOK || r.body != want {
		t.Errorf("after the %s: got %d %q, want 200 with %q", how, r.status, r.body, want)
	}
	if cs := r.header.Get("Cache-Status"); strings.Contains(cs, "collapsed") {
		t.Errorf("after the %s: Cache-Status %q, want an answer of its own", how, cs)
	}
	if r := <-first; r.status != http.StatusOK || r.body != old {
		t.Errorf("the request sent before the %s: got %d %q, want the body of its time", how, r.status, r.body)
	}
	if got := e.up.RequestsFor("31"); got != 2 {
		t.Errorf("upstream calls: got %d, want 2 (the held fill and the new one)", got)
	}
}
