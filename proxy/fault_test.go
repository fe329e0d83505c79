package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// faultEnv is a proxy on a redis-server of the test's own, with the
// production-like short cache budget; batched says whether its reads go
// through the read batcher (-redis-autopipeline).
func faultEnv(t *testing.T, budget time.Duration, batched bool) (*env, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	client, err := cache.NewUniversalClient(srv.URL(), cache.ClientOptions{Timeout: budget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store := cache.NewRedis(client, cache.RedisOptions{AutoPipeline: batched, Breaker: cache.BreakerOptions{OpenTimeout: 200 * time.Millisecond}})
	e := newEnv(t, store, envOptions{
		upstream: upstreamtest.Options{Latency: 20 * time.Millisecond},
		engine:   func(o *readthrough.Options) { o.CacheTimeout = budget; o.Now = time.Now },
	})
	return e, srv
}

// load runs workers that request ids round-robin until stop is closed, and
// counts what clients saw.
type load struct {
	requests, errors, hits atomic.Int64
	maxLatency             atomic.Int64 // nanoseconds
	firstError             atomic.Value // string
}

func (l *load) run(e *env, workers int, ids []string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				r := e.get(ids[i%len(ids)], alice)
				d := int64(time.Since(began))
				for {
					m := l.maxLatency.Load()
					if d <= m || l.maxLatency.CompareAndSwap(m, d) {
						break
					}
				}
				l.requests.Add(1)
				if r.status != http.StatusOK {
					l.errors.Add(1)
					l.firstError.CompareAndSwap(nil, r.header.Get("Cache-Status")+" "+r.body)
				}
				if strings.HasPrefix(r.header.Get("Cache-Status"), "userproxy; hit") {
					l.hits.Add(1)
				}
			}
		})
	}
	return &wg
}

// TestRedisKilledMidRun: Redis dies under load and comes back. Clients see
// no errors, the upstream sees coalesced calls meanwhile, and hits resume.
func TestRedisKilledMidRun(t *testing.T) {
	e, srv := faultEnv(t, 100*time.Millisecond, false)
	ids := []string{"1", "2", "3"}
	for _, id := range ids {
		e.get(id, alice)
	}
	var l load
	stop := make(chan struct{})
	wg := l.run(e, 16, ids, stop)
	testkit.Await(t, "warm hits", func() bool { return l.hits.Load() > 100 })

	srv.Kill()
	reqBefore, upBefore, coBefore := l.requests.Load(), e.up.Requests(), testutil.ToFloat64(e.m.Coalesced)
	testkit.Await(t, "traffic during the outage", func() bool { return l.requests.Load()-reqBefore > 300 })
	reqOut, upOut := l.requests.Load()-reqBefore, e.up.Requests()-upBefore
	coOut := testutil.ToFloat64(e.m.Coalesced) - coBefore

	srv.Restart()
	hitsAt := l.hits.Load()
	testkit.Await(t, "hits after Redis came back", func() bool { return l.hits.Load() > hitsAt+100 })
	close(stop)
	wg.Wait()

	t.Logf("outage: %d requests, %d upstream calls, %d coalesced; total %d requests, %d errors",
		reqOut, upOut, int(coOut), l.requests.Load(), l.errors.Load())
	if n := l.errors.Load(); n != 0 {
		t.Errorf("client-visible errors: got %d, want 0 (first: %v)", n, l.firstError.Load())
	}
	if coOut == 0 || upOut >= reqOut {
		t.Errorf("during the outage %d requests made %d upstream calls with %v coalesced: want them coalesced", reqOut, upOut, coOut)
	}
	if got := testutil.ToFloat64(e.m.CacheErrors.WithLabelValues("get")); got == 0 {
		t.Error(`cache_errors_total{op="get"}: got 0, want the outage counted`)
	}
}

// TestRedisHungBoundedByBudget: a Redis that accepts connections but never
// answers (SIGSTOP) costs each request at most the cache budget.
func TestRedisHungBoundedByBudget(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("autopipeline=%v", batched), func(t *testing.T) { testRedisHung(t, batched) })
	}
}

func testRedisHung(t *testing.T, batched bool) {
	const budget = 50 * time.Millisecond
	e, srv := faultEnv(t, budget, batched)
	ids := []string{"1", "2", "3"}
	for _, id := range ids {
		e.get(id, alice)
	}
	srv.Pause()
	t.Cleanup(srv.Resume)
	var l load
	stop := make(chan struct{})
	wg := l.run(e, 8, ids, stop)
	testkit.Await(t, "traffic while Redis hangs", func() bool { return l.requests.Load() > 200 })
	close(stop)
	wg.Wait()
	max := time.Duration(l.maxLatency.Load())
	t.Logf("Redis hung: %d requests, %d errors, slowest %s", l.requests.Load(), l.errors.Load(), max)
	if n := l.errors.Load(); n != 0 {
		t.Errorf("client-visible errors: got %d, want 0 (first: %v)", n, l.firstError.Load())
	}
	// A lookup and a fill's re-check each cost at most the budget, plus
	// the upstream's 20ms; a hung Redis without the budget would hang the
	// request. The bound is loose on purpose: this checks "bounded", not
	// "fast", on a loaded 2-core machine under -race.
	if bound := 40 * budget; max > bound {
		t.Errorf("slowest request while Redis hung: %s, want under %s", max, bound)
	}
}
