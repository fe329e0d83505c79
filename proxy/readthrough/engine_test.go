package readthrough_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
)

// fakeUpstream answers in process: a JSON user for every id, or status
// when it is set; gate, when not nil, holds every call until it is closed.
type fakeUpstream struct {
	calls  atomic.Int64
	status int
	gate   chan struct{}
	header http.Header
}

func (u *fakeUpstream) Fetch(ctx context.Context, id string, cred upstream.Credentials) (*upstream.Response, error) {
	u.calls.Add(1)
	if u.gate != nil {
		<-u.gate
	}
	if u.status != 0 {
		return &upstream.Response{Status: u.status, Header: http.Header{}, Body: []byte(`{"error":"x"}`)}, nil
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range u.header {
		h[k] = v
	}
	return &upstream.Response{Status: http.StatusOK, Header: h, Body: []byte(`[{"id":"` + id + `","username":"` + cred.Username + `"}]`)}, nil
}

func (u *fakeUpstream) RetryAfter() time.Duration { return 2 * time.Second }

func newEngine(t *testing.T, up readthrough.Upstream) *readthrough.Engine {
	t.Helper()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	e, err := readthrough.New(readthrough.Options{
		Store: cache.NewMemory(cache.MemoryOptions{Now: clock.Now}), Upstream: up,
		KeySecret: []byte("engine-test-secret"), Now: clock.Now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func basic(user, pass string) readthrough.Request {
	return readthrough.Request{Authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)), Authorizations: 1}
}

// get answers r for id and waits for the fill's store, if any, so that the
// next request finds it (Engine.Settle).
func get(e *readthrough.Engine, id string, r readthrough.Request) readthrough.Outcome {
	r.ID = id
	o := e.Get(context.Background(), r)
	e.Settle()
	return o
}

// TestEngineMissThenHit: the engine alone, no HTTP: a miss fills and
// stores, the next read is a hit with the same bytes and headers, and
// another caller's credentials get their own answer.
func TestEngineMissThenHit(t *testing.T) {
	up := &fakeUpstream{header: http.Header{"X-Ratelimit-Remaining": {"9"}}}
	e := newEngine(t, up)
	alice := basic("alice", "pw")
	miss := get(e, "1", alice)
	if miss.Kind != readthrough.KindMiss || miss.Status != 200 || !miss.Stored || miss.FwdStatus != 200 || miss.Result != metrics.CacheMiss {
		t.Fatalf("first read: got %+v, want a stored 200 miss", miss)
	}
	hit := get(e, "1", alice)
	if hit.Kind != readthrough.KindHit || hit.Status != 200 || hit.TTL != 60 || hit.Result != metrics.CacheHit {
		t.Fatalf("second read: got %+v, want a hit with 60s left", hit)
	}
	if string(hit.Body) != string(miss.Body) || hit.ContentType != "application/json" {
		t.Errorf("hit body %q type %q, want the miss's %q", hit.Body, hit.ContentType, miss.Body)
	}
	if v, ok := hit.Header.Get("X-Ratelimit-Remaining"); !ok || string(v) != "9" {
		t.Errorf("hit's replayed X-Ratelimit-Remaining: got %q, %v; want 9", v, ok)
	}
	if bob := get(e, "1", basic("bob", "pw")); bob.Kind != readthrough.KindMiss || string(bob.Body) == string(miss.Body) {
		t.Errorf("another caller: got %s %q, want a miss of its own", bob.Result, bob.Body)
	}
	if got := up.calls.Load(); got != 2 {
		t.Errorf("upstream calls: got %d, want 2", got)
	}
}

func TestEngineRefusesBadCredentials(t *testing.T) {
	up := &fakeUpstream{}
	e := newEngine(t, up)
	for name, r := range map[string]readthrough.Request{
		"none":      {},
		"not basic": {Authorization: "Bearer x", Authorizations: 1},
		"two":       {Authorization: "Basic YTpi", Authorizations: 2},
	} {
		o := get(e, "1", r)
		if o.Status != http.StatusUnauthorized || !o.Challenge || o.Kind != readthrough.KindRefused || o.Err == "" {
			t.Errorf("%s: got %+v, want a 401 challenge", name, o)
		}
	}
	if up.calls.Load() != 0 {
		t.Error("the upstream was called for refused credentials")
	}
}

func TestEngineUpstreamFailure(t *testing.T) {
	e := newEngine(t, &fakeUpstream{status: http.StatusTooManyRequests})
	o := get(e, "1", basic("alice", "pw"))
	if o.Status != http.StatusTooManyRequests || o.Err == "" || o.RetryAfter != "1" || o.FwdStatus != 429 || o.Result != metrics.CacheError {
		t.Errorf("429 upstream: got %+v, want a 429 error with Retry-After 1", o)
	}
}

// TestEngineCoalescesAndJoinersLeave: concurrent reads of one cold key make
// one upstream call; a joiner whose context ends stops waiting (499) while
// the fill goes on for the others.
func TestEngineCoalescesAndJoinersLeave(t *testing.T) {
	up := &fakeUpstream{gate: make(chan struct{})}
	e := newEngine(t, up)
	alice := basic("alice", "pw")
	var wg sync.WaitGroup
	first := make(chan readthrough.Outcome, 1)
	wg.Go(func() { first <- get(e, "7", alice) })
	testkit.WaitFor(t, 10*time.Second, "the fill to reach the upstream", func() bool { return up.calls.Load() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan readthrough.Outcome, 1)
	go func() { r := alice; r.ID = "7"; left <- e.Get(ctx, r) }()
	const n = 5
	outs := make([]readthrough.Outcome, n)
	for i := range n {
		wg.Go(func() { outs[i] = get(e, "7", alice) })
	}
	cancel()
	if o := <-left; o.Status != 499 {
		t.Errorf("joiner whose context ended: status %d, want 499", o.Status)
	}
	close(up.gate)
	wg.Wait()
	if o := <-first; o.Collapsed || !o.Stored {
		t.Errorf("leader: got %+v, want its own stored fill", o)
	}
	for i, o := range outs {
		if o.Status != 200 || (o.Kind != readthrough.KindHit && !o.Collapsed) {
			t.Errorf("reader %d: got %+v, want the shared answer (collapsed) or a hit", i, o)
		}
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
}

func TestEngineInvalidate(t *testing.T) {
	up := &fakeUpstream{}
	e := newEngine(t, up)
	alice := basic("alice", "pw")
	get(e, "3", alice)
	if err := e.Invalidate(context.Background(), "3", readthrough.CauseWrite); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if o := get(e, "3", alice); o.Kind != readthrough.KindMiss {
		t.Errorf("after Invalidate: got %s, want a miss", o.Result)
	}
}

func TestEngineIfNoneMatch(t *testing.T) {
	e := newEngine(t, &fakeUpstream{})
	alice := basic("alice", "pw")
	etag, _ := get(e, "4", alice).Header.Get("Etag")
	r := alice
	r.IfNoneMatch = string(etag)
	if o := get(e, "4", r); o.Status != http.StatusNotModified || o.Body != nil || o.Kind != readthrough.KindHit {
		t.Errorf("matching If-None-Match: got status %d body %q kind %d, want a 304 hit without body", o.Status, o.Body, o.Kind)
	}
}

// gatedStore holds every Set until gate is closed, counting the Sets that
// began.
type gatedStore struct {
	readthrough.Store
	gate chan struct{}
	sets atomic.Int64
}

func (s *gatedStore) Set(ctx context.Context, k cache.Key, e cache.Entry, ttl time.Duration, gen uint64) error {
	s.sets.Add(1)
	<-s.gate
	return s.Store.Set(ctx, k, e, ttl, gen)
}

// TestMissAnswersBeforeItsStore: a cold miss is answered as soon as the
// upstream's body is validated, with the store still running ("stored"
// means it was issued); a request that arrives during the store joins the
// fill and gets its body without an upstream call; once the store is done,
// the next request is a hit.
func TestMissAnswersBeforeItsStore(t *testing.T) {
	up := &fakeUpstream{}
	clock := testkit.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	store := &gatedStore{Store: cache.NewMemory(cache.MemoryOptions{Now: clock.Now}), gate: make(chan struct{})}
	e, err := readthrough.New(readthrough.Options{Store: store, Upstream: up, KeySecret: []byte("s"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	alice := basic("alice", "pw")
	alice.ID = "5"

	first := e.Get(context.Background(), alice) // returns although the store is held
	if first.Status != 200 || !first.Stored || first.Kind != readthrough.KindMiss {
		t.Fatalf("first: %+v, want a 200 miss, stored (issued)", first)
	}
	testkit.Await(t, "the store to begin", func() bool { return store.sets.Load() == 1 })
	during := e.Get(context.Background(), alice)
	if during.Status != 200 || string(during.Body) != string(first.Body) || !during.Collapsed || up.calls.Load() != 1 {
		t.Fatalf("during the store: %+v after %d upstream calls, want the fill's body, collapsed, 1 call", during, up.calls.Load())
	}
	close(store.gate)
	e.Settle()
	if hit := get(e, "5", alice); hit.Kind != readthrough.KindHit || up.calls.Load() != 1 {
		t.Fatalf("after the store: %+v, want a hit", hit)
	}
}
