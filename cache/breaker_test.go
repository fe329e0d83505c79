package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

func TestRedisBreakerOpensOnDeadRedisAndRecovers(t *testing.T) {
	for _, ap := range []bool{false, true} {
		t.Run(fmt.Sprintf("autopipeline=%v", ap), func(t *testing.T) { testBreakerOnDeadRedis(t, ap) })
	}
}

func testBreakerOnDeadRedis(t *testing.T, autoPipeline bool) {
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	var mu sync.Mutex // protects changes
	var changes []BreakerState
	r := NewRedis(client, RedisOptions{AutoPipeline: autoPipeline, Breaker: BreakerOptions{
		Failures: 3, OpenTimeout: 100 * time.Millisecond,
		OnStateChange: func(_, to BreakerState) { mu.Lock(); changes = append(changes, to); mu.Unlock() },
	}})
	ctx := context.Background()
	k := Key{"1", "s"}
	e := Entry{Status: 200, Body: []byte(`[]`)}
	if err := r.Set(ctx, k, e, time.Minute, 0); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	for i := range 3 {
		if _, _, _, err := r.Get(ctx, k); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d on a dead Redis: got %v, want a Redis error", i, err)
		}
	}
	if got := r.BreakerState(); got != BreakerOpen {
		t.Fatalf("breaker after 3 failures: got %s, want open", got)
	}
	// Open: every operation fails at once, without a network call.
	for _, op := range []func() error{
		func() error { _, _, _, err := r.Get(ctx, k); return err },
		func() error { return r.Set(ctx, k, e, time.Minute, 0) },
		func() error { return r.Invalidate(ctx, "1") },
	} {
		if err := op(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("operation while open: got %v, want ErrUnavailable", err)
		}
	}
	// Cancelled callers are not Redis's fault and must not count.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	r2 := NewRedis(client, RedisOptions{Breaker: BreakerOptions{Failures: 1}})
	r2.Get(cctx, k)
	if got := r2.BreakerState(); got != BreakerClosed {
		t.Errorf("breaker after a cancelled call: got %s, want closed", got)
	}

	srv.Restart()
	testkit.WaitFor(t, 5*time.Second, "the store to recover once Redis is back", func() bool {
		_, _, _, err := r.Get(ctx, k)
		return err == nil
	})
	if got := r.BreakerState(); got != BreakerClosed {
		t.Errorf("breaker after recovery: got %s, want closed", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 3 || changes[0] != BreakerOpen || changes[len(changes)-1] != BreakerClosed {
		t.Errorf("state changes: got %v, want open … half-open, closed", changes)
	}
}

// TestBatchedLookupsCountOncePerPipeline: with batching, the breaker counts
// Redis round trips, not callers. A pipeline of many lookups that misses
// the budget is one failure: under load a late batch must not open the
// breaker by itself and send every request to the upstream. Without
// batching, the same lookups are as many failures, and it opens.
func TestBatchedLookupsCountOncePerPipeline(t *testing.T) {
	for _, ap := range []bool{true, false} {
		t.Run(fmt.Sprintf("autopipeline=%v", ap), func(t *testing.T) {
			srv := redistest.Start(t)
			client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			r := NewRedis(client, RedisOptions{AutoPipeline: ap, Breaker: BreakerOptions{Failures: 5, OpenTimeout: time.Minute}})

			srv.Pause() // every lookup misses its budget
			const n = 64
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					_, _, _, errs[i] = r.Get(ctx, Key{strconv.Itoa(i), "s"})
				})
			}
			wg.Wait()
			srv.Resume()
			for i, err := range errs {
				if err == nil {
					t.Fatalf("lookup %d on a paused Redis succeeded", i)
				}
			}
			want := BreakerClosed
			if !ap {
				want = BreakerOpen
			}
			if got := r.BreakerState(); got != want {
				t.Errorf("breaker after %d concurrent lookups timed out: got %s, want %s", n, got, want)
			}
		})
	}
}
