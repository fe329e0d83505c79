package proxy_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy/readthrough"
)

// pauseArmedGet is a store whose first read of id after arm returns only
// when released, having read the store when it was called.
type pauseArmedGet struct {
	readthrough.Store
	id      string
	armed   atomic.Bool
	read    chan struct{} // closed once the paused read has been made
	release chan struct{}
}

func newPauseArmedGet(next readthrough.Store, id string) *pauseArmedGet {
	return &pauseArmedGet{Store: next, id: id, read: make(chan struct{}), release: make(chan struct{})}
}

func (s *pauseArmedGet) Get(ctx context.Context, k cache.Key) (cache.Entry, uint64, bool, error) {
	e, gen, ok, err := s.Store.Get(ctx, k)
	if k.ID == s.id && s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.release
	}
	return e, gen, ok, err
}

// TestRequestsShareACacheReadInFlight: requests for a key whose cache read
// is on its way (no fill registered yet) wait on that read instead of
// sending their own, then share the one fill. A stampede on a cold key
// costs one read and one upstream call.
func TestRequestsShareACacheReadInFlight(t *testing.T) {
	cs := &countingStore{next: cache.NewMemory(cache.MemoryOptions{})}
	ps := newPauseArmedGet(cs, "8")
	ps.armed.Store(true)
	e := newEnv(t, ps, envOptions{})
	want := e.userBody(alice, "8")

	const n = 20
	results := make([]response, n)
	var wg sync.WaitGroup
	wg.Go(func() { results[0] = e.get("8", alice) })
	<-ps.read // the first request's read is out: a miss, held
	for i := 1; i < n; i++ {
		wg.Go(func() { results[i] = e.get("8", alice) })
	}
	testkit.Await(t, "the other requests to wait on the read", func() bool {
		return testutil.ToFloat64(e.m.SharedReads) == n-1
	})
	close(ps.release)
	wg.Wait()
	hits := 0
	for i, r := range results {
		if r.status != http.StatusOK || r.body != want {
			t.Fatalf("request %d: got %d %q, want 200 with the user", i, r.status, r.body)
		}
		if strings.HasPrefix(r.header.Get("Cache-Status"), "userproxy; hit") {
			hits++
		}
	}
	// The shared read, and at most one more per hit: a request that
	// reached the fill only after it had ended leads a fill of its own,
	// which re-reads the cache (a fill of the key ended since its read) and
	// answers it, and whoever joined that fill, with a hit.
	if got := cs.gets.Load(); got < 1 || got > int64(1+hits) {
		t.Errorf("cache reads: got %d, want 1 shared and at most one per hit (%d hits)", got, hits)
	}
	if got := e.up.RequestsFor("8"); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
}

// TestRequestsAfterAWriteLeaveOlderReads: a cache read that began before a
// write through this proxy completed may return the entry the write
// replaced. A request sent after the write must not wait on it: it reads
// for itself and gets the new answer while the old read is still held.
func TestRequestsAfterAWriteLeaveOlderReads(t *testing.T) {
	ps := newPauseArmedGet(cache.NewMemory(cache.MemoryOptions{}), "9")
	e := newEnv(t, ps, envOptions{})
	old := e.get("9", alice).body // stored
	ps.armed.Store(true)

	first := make(chan response, 1)
	go func() { first <- e.get("9", alice) }()
	<-ps.read // the old entry has been read, and is held
	if r := e.do(http.MethodPut, "/api/users/9", alice, `{"first_name":"After"}`); r.status != http.StatusOK {
		t.Fatalf("PUT: got %d %q", r.status, r.body)
	}
	want := e.userBody(alice, "9")
	if want == old {
		t.Fatal("the write did not change the body; the test could not tell the answers apart")
	}

	r := getWhileHeld(t, e, "9", ps.release, "the request sent after the write waited on the read begun before it")
	close(ps.release)
	if r.status != http.StatusOK || r.body != want {
		t.Errorf("after the write: got %d %q, want 200 with %q", r.status, r.body, want)
	}
	if r := <-first; r.status != http.StatusOK || r.body != old {
		t.Errorf("the request sent before the write: got %d %q, want the body of its time", r.status, r.body)
	}
	if got := testutil.ToFloat64(e.m.SharedReads); got != 0 {
		t.Errorf("shared reads: got %v, want 0", got)
	}
}

// getWhileHeld is alice's request for id, made while something the proxy
// could wait on is held until release is closed. If no answer comes within
// a liveness bound (not a latency check), the request is waiting on it:
// getWhileHeld closes release and fails with msg.
func getWhileHeld(t *testing.T, e *env, id string, release chan struct{}, msg string) response {
	t.Helper()
	answer := make(chan response, 1)
	go func() { answer <- e.get(id, alice) }()
	select {
	case r := <-answer:
		return r
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal(msg)
		return response{}
	}
}

// panicArmedGet is a store whose first read of id after arm waits for
// release, then panics.
type panicArmedGet struct {
	*pauseArmedGet
}

func (s panicArmedGet) Get(ctx context.Context, k cache.Key) (cache.Entry, uint64, bool, error) {
	if k.ID == s.id && s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.release
		panic("store bug")
	}
	return s.Store.Get(ctx, k)
}

// TestSharedReadThatPanicsLetsTheOthersGo: under net/http (the package's
// library API), a panic in a handler kills only that request. The requests
// waiting on the panicking request's cache read must not wait forever:
// they get a cache error, and are answered from the upstream.
func TestSharedReadThatPanicsLetsTheOthersGo(t *testing.T) {
	ps := panicArmedGet{newPauseArmedGet(cache.NewMemory(cache.MemoryOptions{}), "10")}
	ps.armed.Store(true)
	e := newEnv(t, ps, envOptions{})
	hs := httptest.NewUnstartedServer(http.HandlerFunc(e.h.ServeHTTP))
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic's stack, on purpose
	hs.Start()
	t.Cleanup(hs.Close)
	e.srv = &testServer{URL: hs.URL, Listener: hs.Listener, client: hs.Client(), close: hs.Close}
	want := e.userBody(alice, "10")

	leader := make(chan struct{})
	go func() {
		defer close(leader)
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/users/10", nil)
		req.SetBasicAuth(alice.Username, alice.Password)
		if resp, err := hs.Client().Do(req); err == nil { // the panic closes the connection
			resp.Body.Close()
			t.Errorf("the request whose read panicked: got %d, want no answer", resp.StatusCode)
		}
	}()
	<-ps.read
	const n = 5
	results := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = e.get("10", alice) })
	}
	testkit.Await(t, "the other requests to wait on the read", func() bool {
		return testutil.ToFloat64(e.m.SharedReads) == n
	})
	close(ps.release)
	wg.Wait()
	<-leader
	for i, r := range results {
		if r.status != http.StatusOK || r.body != want {
			t.Errorf("request %d: got %d %q, want 200 with the user", i, r.status, r.body)
		}
	}
	if got := testutil.ToFloat64(e.m.CacheErrors.WithLabelValues("get")); got != n {
		t.Errorf("cache errors (get): got %v, want %d (one per waiting request)", got, n)
	}
}
