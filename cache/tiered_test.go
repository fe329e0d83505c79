package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
)

// tclock is a settable clock for the tier.
type tclock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

func (c *tclock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *tclock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// replica is one process's tiered store, subscribed to invalidations.
func replica(t *testing.T, addr string, clock *tclock) *Tiered {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	tr, err := NewTiered(NewRedis(client, RedisOptions{}), L1Options{TTL: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// The first subscription flushes the tier; let it happen before the
	// test fills it.
	waitFor(t, 10*time.Second, func() bool { return tr.Stats().Subscribes > 0 })
	return tr
}

func fill(t *testing.T, s *Tiered, k Key, body string) {
	t.Helper()
	ctx := context.Background()
	_, gen, _, err := s.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, k, Entry{Status: 200, Body: []byte(body)}, time.Hour, gen); err != nil {
		t.Fatal(err)
	}
}

func waitLocalMiss(t *testing.T, s *Tiered, k Key, what string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool { _, _, ok := s.GetLocal(k); return !ok })
}

func TestTieredServesFromL1WithoutRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := &tclock{now: time.Unix(1700000000, 0)}
	s := replica(t, mr.Addr(), clock)
	a, b := Key{"1", "scope-a"}, Key{"1", "scope-b"}
	fill(t, s, a, "alice's")
	fill(t, s, b, "bob's")
	mr.Close()
	for k, want := range map[Key]string{a: "alice's", b: "bob's"} {
		e, _, ok, err := s.Get(context.Background(), k)
		if err != nil || !ok || string(e.Body) != want {
			t.Errorf("Get %v with Redis down: got %q ok=%v err=%v, want %q from L1", k, e.Body, ok, err, want)
		}
	}
	clock.Advance(time.Hour + time.Second) // past the tier's TTL
	if _, _, ok := s.GetLocal(a); ok {
		t.Error("L1 served an item past its TTL")
	}
	if st := s.Stats(); st.Hits != 2 || st.Bytes == 0 {
		t.Errorf("stats: got %+v, want 2 hits and some bytes", st)
	}
}

func TestTieredInvalidationReachesEveryReplica(t *testing.T) {
	srv := redistest.Start(t)
	clock := &tclock{now: time.Unix(1700000000, 0)}
	a, b := replica(t, srv.Addr(), clock), replica(t, srv.Addr(), clock)
	k1, k2 := Key{"1", "s"}, Key{"2", "s"}
	fill(t, a, k1, "v1")
	fill(t, a, k2, "v2")
	for _, k := range []Key{k1, k2} { // b reads them into its own tier
		if _, _, ok, _ := b.Get(context.Background(), k); !ok {
			t.Fatalf("b: %v not found", k)
		}
	}
	if err := a.Invalidate(context.Background(), "1"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := a.GetLocal(k1); ok {
		t.Error("the invalidating replica still holds the user")
	}
	waitLocalMiss(t, b, k1, "the other replica to drop user 1")
	if _, _, ok := b.GetLocal(k2); !ok {
		t.Error("user 2 was dropped by user 1's invalidation")
	}
	if b.Stats().InvalidationsReceived == 0 {
		t.Error("b counted no invalidation received")
	}
	if err := a.InvalidateAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitLocalMiss(t, b, k2, "the other replica to drop everything")
}

func TestTieredFlushesWhenSubscriptionReconnects(t *testing.T) {
	srv := redistest.Start(t)
	clock := &tclock{now: time.Unix(1700000000, 0)}
	s := replica(t, srv.Addr(), clock)
	k := Key{"7", "s"}
	fill(t, s, k, "v")
	srv.Kill()
	srv.Restart() // invalidations published meanwhile would have been lost
	waitLocalMiss(t, s, k, "the tier to be flushed on resubscribe")
	// The count moves just after the flush: wait for it rather than race it.
	waitFor(t, 10*time.Second, func() bool { return s.Stats().Subscribes >= 2 })
}

func TestTieredRefusesStaleSetAndLateInserts(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := &tclock{now: time.Unix(1700000000, 0)}
	s := replica(t, mr.Addr(), clock)
	ctx := context.Background()
	k := Key{"9", "s"}
	_, gen, _, _ := s.Get(ctx, k) // a fill begins
	if err := s.Invalidate(ctx, "9"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, k, Entry{Status: 200, Body: []byte("old")}, time.Hour, gen); !errors.Is(err, ErrGenerationChanged) {
		t.Fatalf("Set after an invalidation: got %v, want ErrGenerationChanged", err)
	}
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("the refused entry reached the tier")
	}
	// A Redis read that began before an invalidation but lands after it
	// must not stay in the tier.
	seq := s.seq.Load()
	s.dropLocal("9")
	s.l1.Set(k, &l1Item{e: Entry{Status: 200, Body: []byte("late")}, seq: seq})
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("an item read before the invalidation was served after it")
	}
}
