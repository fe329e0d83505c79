package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

// fleetPair is two replicas' handles on one fleet record.
func fleetPair(t *testing.T, b backend) (a, c *FleetBreaker) {
	t.Helper()
	r := NewRedis(b.client, RedisOptions{Prefix: b.prefix})
	return NewFleetBreaker(r, FleetOptions{ID: "a", Timeout: time.Second}),
		NewFleetBreaker(r, FleetOptions{ID: "c", Timeout: time.Second})
}

// wantView fails t unless f's view is (reports, own) with the probe lease
// held or not.
func wantView(t *testing.T, f *FleetBreaker, reports int, own, held bool) {
	t.Helper()
	v, err := f.View(t.Context())
	if err != nil {
		t.Fatalf("%s: View: %v", f.ID(), err)
	}
	if v.Reports != reports || v.Own != own || (v.ProbeIn > 0) != held {
		t.Fatalf("%s: View: got %+v, want %d reports, own %v, probe held %v", f.ID(), v, reports, own, held)
	}
}

func TestFleetBreakerRecord(t *testing.T) {
	for _, be := range append(backends, clusterBackend) {
		t.Run(be.name, func(t *testing.T) {
			ctx := t.Context()
			b := be.start(t)
			a, c := fleetPair(t, b)
			wantView(t, a, 0, false, false)

			if err := a.Report(ctx, time.Minute); err != nil {
				t.Fatalf("Report: %v", err)
			}
			wantView(t, a, 1, true, false)
			wantView(t, c, 1, false, false)
			// A second report of the same replica is still one replica.
			if err := a.Report(ctx, time.Minute); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if err := c.Report(ctx, time.Minute); err != nil {
				t.Fatalf("Report: %v", err)
			}
			wantView(t, a, 2, true, false)

			for _, step := range []struct {
				f    *FleetBreaker
				want bool
			}{{a, true}, {c, false}, {a, false}} {
				won, err := step.f.TryProbe(ctx, time.Minute)
				if err != nil || won != step.want {
					t.Fatalf("%s: TryProbe: got (%v, %v), want (%v, nil)", step.f.ID(), won, err, step.want)
				}
			}
			if v, _ := c.View(ctx); v.ProbeIn <= 50*time.Second || v.ProbeIn > time.Minute {
				t.Errorf("probe lease left: got %v, want about a minute", v.ProbeIn)
			}

			// Failures: counted per replica, reset by a success anywhere.
			for _, f := range []*FleetBreaker{a, a, c} {
				if _, err := f.Fail(ctx, time.Minute); err != nil {
					t.Fatalf("Fail: %v", err)
				}
			}
			if v, err := a.View(ctx); err != nil || v.Failures != 3 || v.Failing != 2 {
				t.Fatalf("View after 3 failures of 2 replicas: got (%+v, %v), want 3 failures, 2 failing", v, err)
			}
			if err := c.Reset(ctx); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			v, err := a.Fail(ctx, time.Minute)
			if err != nil || v.Failures != 1 || v.Failing != 1 || v.Reports != 2 {
				t.Fatalf("Fail after Reset: got (%+v, %v), want 1 failure, 1 failing, the 2 reports kept", v, err)
			}

			if err := c.Clear(ctx); err != nil {
				t.Fatalf("Clear: %v", err)
			}
			wantView(t, a, 0, false, false)
			if v, _ := a.View(ctx); v.Failures != 0 {
				t.Errorf("failures after Clear: got %d, want 0", v.Failures)
			}
			if won, err := c.TryProbe(ctx, time.Minute); err != nil || !won {
				t.Fatalf("TryProbe after Clear: got (%v, %v), want (true, nil)", won, err)
			}
		})
	}
}

// TestFleetBreakerReportsLapse: a report counts for its ttl by Redis's
// clock, and the set itself does not outlive its last report.
func TestFleetBreakerReportsLapse(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) {
		ctx := t.Context()
		mr := miniredis.RunT(t)
		now := time.Now()
		mr.SetTime(now)
		client := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { client.Close() })
		a, c := fleetPair(t, backend{client: client})
		if err := a.Report(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.Report(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		mr.SetTime(now.Add(15 * time.Second))
		mr.FastForward(15 * time.Second)
		wantView(t, c, 1, true, false)
		wantView(t, a, 1, false, false)
		mr.SetTime(now.Add(25 * time.Second))
		mr.FastForward(10 * time.Second)
		wantView(t, a, 0, false, false)
		if mr.Exists(a.reports) {
			t.Errorf("reports set still exists after its last report lapsed")
		}
	})
	t.Run("redis-server", func(t *testing.T) {
		b := newRealRedis(t)
		a, c := fleetPair(t, b)
		if err := a.Report(t.Context(), 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := c.Report(t.Context(), time.Minute); err != nil {
			t.Fatal(err)
		}
		wantView(t, c, 2, true, false)
		testkit.Await(t, "a's report to lapse", func() bool {
			v, err := c.View(t.Context())
			return err == nil && v.Reports == 1
		})
		if ttl := b.client.PTTL(t.Context(), a.reports).Val(); ttl < 50*time.Second {
			t.Errorf("reports set TTL: got %v, want about a minute (the longest report)", ttl)
		}
	})
}

// TestFleetBreakerPurgeLeavesRecord: purging every user is not a verdict
// on the upstream.
func TestFleetBreakerPurgeLeavesRecord(t *testing.T) {
	b := newMiniredis(t)
	r := NewRedis(b.client, RedisOptions{})
	f := NewFleetBreaker(r, FleetOptions{})
	if err := f.Report(t.Context(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.InvalidateAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantView(t, f, 1, true, false)
}

// TestFleetBreakerRedisPaused: a Redis that stops answering costs each
// operation no more than the timeout, and once the store's breaker opens,
// nothing at all.
func TestFleetBreakerRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := NewRedis(client, RedisOptions{Breaker: BreakerOptions{Failures: 3, OpenTimeout: time.Minute}})
	const timeout = 100 * time.Millisecond
	f := NewFleetBreaker(r, FleetOptions{Timeout: timeout})
	if _, err := f.View(t.Context()); err != nil {
		t.Fatalf("View before the pause: %v", err) // the connection is made
	}

	srv.Pause()
	t.Cleanup(srv.Resume)
	ops := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"View", func(ctx context.Context) error { _, err := f.View(ctx); return err }},
		{"Fail", func(ctx context.Context) error { _, err := f.Fail(ctx, time.Minute); return err }},
		{"Reset", f.Reset},
		{"TryProbe", func(ctx context.Context) error { _, err := f.TryProbe(ctx, time.Minute); return err }},
		{"Report", func(ctx context.Context) error { return f.Report(ctx, time.Minute) }},
		{"Clear", f.Clear},
	}
	var slowest time.Duration
	for _, op := range ops {
		start := time.Now()
		err := op.do(t.Context())
		took := time.Since(start)
		slowest = max(slowest, took)
		if err == nil {
			t.Errorf("%s on a paused Redis: got nil error", op.name)
		}
		// A generous functional bound: far below the client's own 5s.
		if took > time.Second {
			t.Errorf("%s on a paused Redis took %v, want about the %v timeout", op.name, took, timeout)
		}
	}
	t.Logf("slowest operation on a paused Redis: %v (timeout %v)", slowest, timeout)
	if got := r.BreakerState(); got != BreakerOpen {
		t.Fatalf("store breaker after 3 timeouts: got %s, want open", got)
	}
	if _, err := f.View(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("View with the store's breaker open: got %v, want ErrUnavailable", err)
	}
}
