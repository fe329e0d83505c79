package readthrough_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough"
)

// replica is one engine of a fleet sharing a Redis.
type replica struct {
	e      *readthrough.Engine
	m      *metrics.Metrics
	leases *cache.FillLeases
}

// leases reads the replica's count of fill leases with result.
func (r replica) leased(result string) float64 {
	return testutil.ToFloat64(r.m.FillLeases.WithLabelValues(result))
}

// newReplica returns an engine on the Redis at url, sharing fills through
// leases; subscribe runs its announcement subscription (else its waiters
// can only poll).
func newReplica(t *testing.T, url string, up readthrough.Upstream, subscribe bool) replica {
	t.Helper()
	client, err := cache.NewUniversalClient(url, cache.ClientOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store := cache.NewRedis(client, cache.RedisOptions{})
	leases := cache.NewFillLeases(store)
	if subscribe {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = leases.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	m := metrics.New(prometheus.NewRegistry())
	e, err := readthrough.New(readthrough.Options{
		Store: store, Upstream: up, KeySecret: []byte("fleet-secret"),
		Leases: leases, LeaseTTL: time.Second, LeasePoll: 20 * time.Millisecond,
		CacheTimeout: 200 * time.Millisecond, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return replica{e: e, m: m, leases: leases}
}

// stampede runs a Get of id on a (whose upstream call the gate holds) and,
// once a has the lease, on b; then, once b waits on a's lease, opens the
// gate and returns both answers.
func stampede(t *testing.T, url string, up *fakeUpstream, a, b replica, id string) (oa, ob readthrough.Outcome) {
	t.Helper()
	alice := basic("alice", "pw")
	var wg sync.WaitGroup
	wg.Go(func() { oa = get(a.e, id, alice) })
	testkit.Await(t, "the first replica's upstream call", func() bool { return up.calls.Load() == 1 })
	wg.Go(func() { ob = get(b.e, id, alice) })
	raw := rawClient(t, url)
	testkit.Await(t, "the second replica to wait on the lease", func() bool {
		// A refused lease attempt marks the lease as waited on.
		keys, _ := raw.Keys(context.Background(), "userproxy:{"+id+"}:lease:*").Result()
		for _, key := range keys {
			if v, _ := raw.Get(context.Background(), key).Result(); strings.HasSuffix(v, "w") {
				return true
			}
		}
		return false
	})
	close(up.gate)
	wg.Wait()
	return oa, ob
}

// rawClient is a plain client of the Redis at url, to look at keys.
func rawClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	c, err := cache.NewUniversalClient(url, cache.ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scopeOf finds the scope of user id's one cached entry in Redis.
func scopeOf(t *testing.T, url, id string) string {
	t.Helper()
	keys, err := rawClient(t, url).Keys(context.Background(), "userproxy:{"+id+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if scope := strings.TrimPrefix(k, "userproxy:{"+id+"}:"); scope != "gen" && !strings.Contains(scope, ":") {
			return scope
		}
	}
	t.Fatalf("no entry of user %s among %v", id, keys)
	return ""
}

func TestLeaseOneUpstreamCallAcrossReplicas(t *testing.T) {
	for _, subscribe := range []bool{true, false} {
		name := map[bool]string{true: "announced", false: "polled"}[subscribe]
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			up := &fakeUpstream{gate: make(chan struct{})}
			a, b := newReplica(t, srv.URL(), up, subscribe), newReplica(t, srv.URL(), up, subscribe)
			oa, ob := stampede(t, srv.URL(), up, a, b, "7")
			if n := up.calls.Load(); n != 1 {
				t.Fatalf("upstream calls: %d, want 1 for the fleet", n)
			}
			if oa.Status != 200 || !oa.Stored || oa.Collapsed {
				t.Errorf("holder: %+v, want a stored 200 of its own", oa)
			}
			if ob.Status != 200 || string(ob.Body) != string(oa.Body) || !ob.Collapsed || ob.Kind != readthrough.KindMiss {
				t.Errorf("waiter: %+v, want the holder's 200, collapsed", ob)
			}
			if a.leased(metrics.LeaseWon) != 1 || b.leased(metrics.LeaseWaited) != 1 {
				t.Errorf("leases: holder won %v, waiter waited %v; want 1 and 1",
					a.leased(metrics.LeaseWon), b.leased(metrics.LeaseWaited))
			}
			if hit := get(b.e, "7", basic("alice", "pw")); hit.Kind != readthrough.KindHit {
				t.Errorf("next read on the waiter: %+v, want a hit", hit)
			}
		})
	}
}

func TestLeaseWaiterGetsTheHoldersFailure(t *testing.T) {
	srv := redistest.Start(t)
	up := &fakeUpstream{gate: make(chan struct{}), status: 503}
	a, b := newReplica(t, srv.URL(), up, true), newReplica(t, srv.URL(), up, true)
	oa, ob := stampede(t, srv.URL(), up, a, b, "8")
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream calls: %d, want 1", n)
	}
	if oa.Status != 502 || oa.FwdStatus != 503 {
		t.Errorf("holder: %+v, want 502 with fwd-status 503", oa)
	}
	if ob.Status != oa.Status || ob.FwdStatus != oa.FwdStatus || ob.Err != oa.Err || !ob.Collapsed {
		t.Errorf("waiter: %+v, want the holder's failure (%d, %d, %q), collapsed", ob, oa.Status, oa.FwdStatus, oa.Err)
	}
}

func TestLeaseOfADeadHolderIsTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	up := &fakeUpstream{}
	r := newReplica(t, srv.URL(), up, true)
	// A replica that takes the lease and dies: nobody releases it.
	alice := basic("alice", "pw")
	first := get(r.e, "9", alice) // learn the key: fill it once, then drop it
	if first.Status != 200 {
		t.Fatalf("first read: %+v", first)
	}
	if err := r.e.Invalidate(context.Background(), "9", readthrough.CauseAdmin); err != nil {
		t.Fatal(err)
	}
	k := cache.Key{ID: "9", Scope: scopeOf(t, srv.URL(), "9")}
	testkit.Await(t, "the dead holder to take the lease (once the first fill's outcome is gone)", func() bool {
		st, err := r.leases.TryLease(context.Background(), k, 300*time.Millisecond, "")
		return err == nil && st.Token != ""
	})
	o := get(r.e, "9", alice)
	if o.Status != 200 || up.calls.Load() != 2 {
		t.Fatalf("after the holder died: %+v with %d upstream calls, want a 200 from one more call", o, up.calls.Load())
	}
	if n := r.leased(metrics.LeaseExpired); n != 1 {
		t.Errorf("leases expired: %v, want 1", n)
	}
}

func TestLeaseRedisDownFillsAlone(t *testing.T) {
	srv := redistest.Start(t)
	up := &fakeUpstream{}
	a, b := newReplica(t, srv.URL(), up, false), newReplica(t, srv.URL(), up, false)
	srv.Kill()
	for _, r := range []replica{a, b} {
		if o := get(r.e, "10", basic("alice", "pw")); o.Status != 200 {
			t.Errorf("with Redis down: %+v, want a 200 from the upstream", o)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Errorf("upstream calls: %d, want one per replica", n)
	}
}
