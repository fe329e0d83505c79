package capacity

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
)

// redisCPU returns the CPU time the server behind c has used
// (used_cpu_sys + used_cpu_user).
func redisCPU(ctx context.Context, c *redis.Client) (time.Duration, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	f := infoFields(info)
	var sum float64
	for _, name := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(f[name], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		sum += v
	}
	return time.Duration(sum * float64(time.Second)), nil
}

// load runs ops calls of op over workers goroutines and returns how long
// it took; the first error stops it.
func load(ctx context.Context, workers, ops int, op func(ctx context.Context, i int) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= ops {
					return
				}
				if err := op(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return time.Since(start), <-errs
}

func TestLoad(t *testing.T) {
	var seen [100]atomic.Bool
	if _, err := load(t.Context(), 7, 100, func(_ context.Context, i int) error {
		if seen[i].Swap(true) {
			return fmt.Errorf("op %d twice", i)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if !seen[i].Load() {
			t.Fatalf("op %d never ran", i)
		}
	}
	_, err := load(t.Context(), 3, 50, func(_ context.Context, i int) error {
		if i == 10 {
			return fmt.Errorf("op %d failed", i)
		}
		return nil
	})
	if err == nil || err.Error() != "op 10 failed" {
		t.Errorf("got %v, want op 10's error", err)
	}
}

// TestRedisCPU drives the real store (cache.NewRedis) with 32 goroutines,
// as a busy replica's requests would, and reports the Redis CPU time per
// Redis-read hit (Get that finds its entry) and per miss (Get that finds
// nothing, then Set), with reads sent one by one and batched
// (RedisOptions.AutoPipeline, the proxy's default), and per miss under an
// uncontended fill lease (cache.FillLeases). CPU per request is
// what decides a node's capacity; unlike a rate measured here, it barely
// depends on what else the shared host runs.
func TestRedisCPU(t *testing.T) {
	requireMeasure(t)
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const users, workers = 10000, 32
	now := time.Now()
	e := cache.Entry{Status: 200, ContentType: "application/json", Body: typicalBody(t), Header: etagOnly(), Stored: now, Expires: now.Add(time.Hour)}
	for run := 1; run <= 2; run++ {
		for _, pipelined := range []bool{false, true} {
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: workers})
			store := cache.NewRedis(rc, cache.RedisOptions{AutoPipeline: pipelined})
			leases := cache.NewFillLeases(store)
			if err := rc.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			key := func(i int, scope string) cache.Key {
				return cache.Key{ID: strconv.Itoa(1000000 + i%users), Scope: scope}
			}
			hitScope := scopeOf(1)
			if _, err := load(ctx, workers, users, func(ctx context.Context, i int) error {
				return store.Set(ctx, key(i, hitScope), e, time.Hour, 0)
			}); err != nil {
				t.Fatal(err)
			}
			mixes := []struct {
				name string
				ops  int
				op   func(ctx context.Context, i int) error
			}{
				{"hit (Get finds the entry)", 200000, func(ctx context.Context, i int) error {
					_, _, ok, err := store.Get(ctx, key(i, hitScope))
					if err == nil && !ok {
						err = fmt.Errorf("user %d: a miss, want a hit", i)
					}
					return err
				}},
				{"miss (Get finds nothing, then Set)", 60000, func(ctx context.Context, i int) error {
					// A scope per pass over the users: each Get is a miss.
					k := key(i, scopeOf(100+i/users))
					_, gen, ok, err := store.Get(ctx, k)
					if err != nil || ok {
						return fmt.Errorf("user %d: ok %v, err %v; want a miss", i, ok, err)
					}
					return store.Set(ctx, k, e, time.Hour, gen)
				}},
				{"miss under a fill lease, uncontended", 60000, func(ctx context.Context, i int) error {
					// As the engine does it: lookup, take the lease, store,
					// release (no waiter, so no announcement).
					k := key(i, scopeOf(200+i/users))
					_, gen, ok, err := store.Get(ctx, k)
					if err != nil || ok {
						return fmt.Errorf("user %d: ok %v, err %v; want a miss", i, ok, err)
					}
					st, err := leases.TryLease(ctx, k, 3*time.Second, "")
					token := st.Token
					if err != nil || token == "" {
						return fmt.Errorf("user %d: lease not taken (err %v)", i, err)
					}
					if err := store.Set(ctx, k, e, time.Hour, gen); err != nil {
						return err
					}
					_, err = leases.Release(ctx, k, token, "s", 200*time.Millisecond)
					return err
				}},
			}
			for _, m := range mixes {
				cpu0, err := redisCPU(ctx, rc)
				if err != nil {
					t.Fatal(err)
				}
				took, err := load(ctx, workers, m.ops, m.op)
				if err != nil {
					t.Fatal(err)
				}
				cpu1, err := redisCPU(ctx, rc)
				if err != nil {
					t.Fatal(err)
				}
				per := (cpu1 - cpu0) / time.Duration(m.ops)
				t.Logf("run %d, reads batched %-5v: %-36s %6.1f µs of Redis CPU each (%5.0f/s per Redis core); client rate here %6.0f/s",
					run, pipelined, m.name, float64(per)/1e3, 1e9/float64(per), float64(m.ops)/took.Seconds())
			}
			rc.Close()
		}
	}
}
