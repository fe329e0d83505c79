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

// newTClock is the tier tests' clock; it moves only when told to.
func newTClock() *testkit.Clock { return testkit.NewClock(time.Unix(1700000000, 0)) }

// newTiered is one process's tiered store, not yet subscribed (see run).
func newTiered(t *testing.T, addr string, clock *testkit.Clock, ttl time.Duration) *Tiered {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	return newTieredOn(t, client, "", clock, ttl)
}

// newTieredOn is newTiered on client, with key prefix prefix ("" = default).
func newTieredOn(t *testing.T, client redis.UniversalClient, prefix string, clock *testkit.Clock, ttl time.Duration) *Tiered {
	t.Helper()
	tr, err := NewTiered(NewRedis(client, RedisOptions{Prefix: prefix}), L1Options{TTL: ttl, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// run starts tr's Run for the rest of the test and waits for its first
// subscription to be confirmed: the tier has been flushed and holds a lease.
func run(t *testing.T, tr *Tiered) {
	t.Helper()
	testkit.Go(t, func(ctx context.Context) { tr.Run(ctx) })
	testkit.WaitFor(t, 10*time.Second, "the first subscription", func() bool { return tr.Stats().Subscribes > 0 })
}

// replica is one process's tiered store, subscribed to invalidations.
func replica(t *testing.T, addr string, clock *testkit.Clock, ttl time.Duration) *Tiered {
	t.Helper()
	tr := newTiered(t, addr, clock, ttl)
	run(t, tr)
	return tr
}

// fill stores body under k, fresh until expires, as the proxy's fill does.
func fill(t *testing.T, s *Tiered, k Key, body string, expires time.Time) {
	t.Helper()
	ctx := context.Background()
	_, gen, _, err := s.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, k, Entry{Status: 200, Body: []byte(body), Expires: expires}, 2*time.Hour, gen); err != nil {
		t.Fatal(err)
	}
}

func waitLocal(t *testing.T, s *Tiered, k Key, want bool, what string) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, what, func() bool { _, _, ok := s.GetLocal(k); return ok == want })
}

// TestTieredLease: the tier answers only while a heartbeat sent less than
// TTL ago has come back.
func TestTieredLease(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTClock()
	const ttl = 20 * time.Millisecond
	s := newTiered(t, srv.Addr(), clock, ttl)
	ctx := context.Background()
	k := Key{"1", "s"}

	fill(t, s, k, "v", clock.Now().Add(time.Hour))
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("GetLocal served without Run: there is no lease before the first pong")
	}
	if e, _, ok, err := s.Get(ctx, k); err != nil || !ok || string(e.Body) != "v" {
		t.Fatalf("Get without a lease: got %q ok=%v err=%v, want v from Redis", e.Body, ok, err)
	}
	if st := s.Stats(); st.LeaseValid || st.LeaseMisses != 1 || st.Hits != 0 {
		t.Errorf("stats without a lease: got %+v, want LeaseValid false, 1 lease miss, 0 hits", st)
	}

	run(t, s) // the first subscription flushed the tier: fill it again
	fill(t, s, k, "v", clock.Now().Add(time.Hour))
	if _, _, ok := s.GetLocal(k); !ok {
		t.Fatal("GetLocal missed under a lease")
	}
	if !s.Stats().LeaseValid {
		t.Error("Stats: LeaseValid false after a pong")
	}

	// Pongs stop. The clock moves on every poll, so a pong for a ping that
	// Redis answered just before it stopped cannot keep the lease.
	srv.Pause()
	testkit.WaitFor(t, 10*time.Second, "the lease to lapse", func() bool {
		clock.Advance(ttl)
		_, _, ok := s.GetLocal(k)
		return !ok
	})
	paused := clock.Now()
	if s.Stats().LeaseValid {
		t.Error("Stats: LeaseValid true with Redis paused past TTL")
	}
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("GetLocal served again with no new pong")
	}

	srv.Resume()
	waitLocal(t, s, k, true, "a hit once pongs come back")
	// Every ping sent before the clock reached paused is TTL old by now:
	// the lease comes from a ping sent during the pause, answered after it.
	if from := s.leaseFrom.Load(); from < paused.UnixNano() {
		t.Errorf("hit under a lease from %v; want one from a ping sent at %v or later", time.Unix(0, from), paused)
	}
}

// TestTieredEntryLivesUntilFreshExpiry: with the lease renewed, an item is
// served long past TTL, up to its fresh expiry and never after.
func TestTieredEntryLivesUntilFreshExpiry(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTClock()
	s := replica(t, srv.Addr(), clock, 20*time.Millisecond)
	ctx := context.Background()
	k, long := Key{"1", "s"}, Key{"2", "s"}
	expires := clock.Now().Add(5 * time.Minute)
	fill(t, s, k, "v", expires)
	fill(t, s, long, "v", clock.Now().Add(time.Hour)) // capped at maxItemLife
	for range 4 {
		clock.Advance(time.Minute)
		waitLocal(t, s, k, true, "a hit, minutes after the fill, once a pong renewed the lease")
	}
	clock.Advance(time.Minute) // at expires
	testkit.WaitFor(t, 10*time.Second, "a lease", func() bool { return s.Stats().LeaseValid })
	if _, _, ok := s.GetLocal(k); ok {
		t.Errorf("served at Entry.Expires (%v)", expires)
	}
	// Redis still holds the stale entry (for stale-while-revalidate); it
	// must not come back into the tier.
	if _, _, ok, err := s.Get(ctx, k); err != nil || !ok {
		t.Fatalf("Get of the stale entry: ok=%v err=%v, want it from Redis", ok, err)
	}
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("a stale entry read from Redis was put in the tier")
	}
	if _, _, ok := s.GetLocal(long); !ok {
		t.Error("an entry fresh for an hour was not served after 5m")
	}
	clock.Advance(maxItemLife - 5*time.Minute)
	testkit.WaitFor(t, 10*time.Second, "a lease", func() bool { return s.Stats().LeaseValid })
	if _, _, ok := s.GetLocal(long); ok {
		t.Errorf("served past maxItemLife (%v)", maxItemLife)
	}
}

// TestTieredInvalidationReachesEveryReplica: replica A caches, B
// invalidates, and A's tier drops the user once the message arrives.
func TestTieredInvalidationReachesEveryReplica(t *testing.T) {
	// Two replicas, each with its own client, as two processes would be.
	// On a Cluster the invalidation is published on the node that holds
	// the user's slot and must reach a subscriber on whichever node it is.
	for _, be := range []struct {
		name     string
		replicas func(t *testing.T, clock *testkit.Clock) (a, b *Tiered)
	}{
		{"redis-server", func(t *testing.T, clock *testkit.Clock) (a, b *Tiered) {
			srv := redistest.Start(t)
			return replica(t, srv.Addr(), clock, time.Hour), replica(t, srv.Addr(), clock, time.Hour)
		}},
		{"redis-cluster", func(t *testing.T, clock *testkit.Clock) (a, b *Tiered) {
			prefix := sharedPrefix()
			a = newTieredOn(t, newClusterRedis(t).client, prefix, clock, time.Hour)
			b = newTieredOn(t, newClusterRedis(t).client, prefix, clock, time.Hour)
			run(t, a)
			run(t, b)
			return a, b
		}},
		{"redis-sentinel", func(t *testing.T, clock *testkit.Clock) (a, b *Tiered) {
			prefix := sharedPrefix()
			a = newTieredOn(t, newSentinelRedis(t).client, prefix, clock, time.Hour)
			b = newTieredOn(t, newSentinelRedis(t).client, prefix, clock, time.Hour)
			run(t, a)
			run(t, b)
			return a, b
		}},
	} {
		t.Run(be.name, func(t *testing.T) {
			clock := newTClock()
			a, b := be.replicas(t, clock)
			ctx := context.Background()
			k1, k2 := Key{"1", "s"}, Key{"2", "s"}
			fill(t, a, k1, "v1", clock.Now().Add(time.Hour))
			fill(t, a, k2, "v2", clock.Now().Add(time.Hour))
			for _, k := range []Key{k1, k2} { // b reads them into its own tier
				if _, _, ok, _ := b.Get(ctx, k); !ok {
					t.Fatalf("b: %v not found", k)
				}
			}
			if err := b.Invalidate(ctx, "1"); err != nil {
				t.Fatal(err)
			}
			if _, _, ok := b.GetLocal(k1); ok {
				t.Error("the invalidating replica still holds the user")
			}
			waitLocal(t, a, k1, false, "the other replica to drop user 1")
			if st := a.Stats(); !st.LeaseValid || st.InvalidationsReceived == 0 {
				t.Errorf("a: got %+v; want the miss to come from a message received under a valid lease", st)
			}
			if _, _, ok := a.GetLocal(k2); !ok {
				t.Error("user 2 was dropped by user 1's invalidation")
			}
			if err := b.InvalidateAll(ctx); err != nil {
				t.Fatal(err)
			}
			waitLocal(t, a, k2, false, "the other replica to drop everything")
		})
	}
}

// TestTieredPublishesInTheInvalidateScript: the script that bumps the
// generation is the one that publishes, so a successful invalidation has
// always been announced.
func TestTieredPublishesInTheInvalidateScript(t *testing.T) {
	for _, be := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"miniredis", func(t *testing.T) string { return miniredis.RunT(t).Addr() }},
		{"redis-server", func(t *testing.T) string { return redistest.Start(t).Addr() }},
	} {
		t.Run(be.name, func(t *testing.T) {
			addr := be.addr(t)
			s := newTiered(t, addr, newTClock(), time.Hour)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			raw := redis.NewClient(&redis.Options{Addr: addr})
			defer raw.Close()
			ps := raw.Subscribe(ctx, s.channel)
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
				t.Fatal(err)
			}
			next := func() string {
				t.Helper()
				m, err := ps.ReceiveMessage(ctx)
				if err != nil {
					t.Fatalf("receiving: %v", err)
				}
				return m.Payload
			}

			if err := s.l2.invalidateUser(ctx, "5", s.channel); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "id:5" {
				t.Errorf("after the script alone: got %q, want id:5", got)
			}
			if err := s.Invalidate(ctx, "6"); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != "id:6" {
				t.Errorf("after Tiered.Invalidate: got %q, want id:6", got)
			}
			// The plain store has no channel: the marker published after
			// its invalidation is the next message.
			if err := s.l2.Invalidate(ctx, "7"); err != nil {
				t.Fatal(err)
			}
			raw.Publish(ctx, s.channel, "marker")
			if got := next(); got != "marker" {
				t.Errorf("after Redis.Invalidate: got %q, want nothing published", got)
			}
			if err := s.InvalidateAll(ctx); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"all", "all"} {
				if got := next(); got != want {
					t.Errorf("InvalidateAll message %d: got %q, want %q", i, got, want)
				}
			}
		})
	}
}

// TestTieredReconnect: when Redis dies the lease is void at once; when it
// is back, the new subscription flushes the tier and the lease returns.
func TestTieredReconnect(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTClock()
	s := replica(t, srv.Addr(), clock, time.Hour)
	k := Key{"7", "s"}
	fill(t, s, k, "v", clock.Now().Add(time.Hour))
	if _, _, ok := s.GetLocal(k); !ok {
		t.Fatal("no hit before the failure")
	}
	srv.Kill()
	// The clock stands still: only the receive error can void the lease.
	testkit.WaitFor(t, 10*time.Second, "the lease to lapse", func() bool { return !s.Stats().LeaseValid })
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("served with the subscription down")
	}
	srv.Restart() // invalidations published meanwhile would have been lost
	testkit.WaitFor(t, 10*time.Second, "a resubscription", func() bool { return s.Stats().Subscribes >= 2 })
	if !s.Stats().LeaseValid {
		t.Error("no lease once the new subscription was confirmed")
	}
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("an item from before the reconnection was served after it")
	}
	fill(t, s, k, "v2", clock.Now().Add(time.Hour))
	if e, _, ok := s.GetLocal(k); !ok || string(e.Body) != "v2" {
		t.Errorf("after the reconnection: got %q ok=%v, want v2 from the tier", e.Body, ok)
	}
}

func TestTieredRefusesStaleSetAndLateInserts(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := newTClock()
	s := replica(t, mr.Addr(), clock, time.Hour)
	ctx := context.Background()
	k := Key{"9", "s"}
	_, gen, _, _ := s.Get(ctx, k) // a fill begins
	if err := s.Invalidate(ctx, "9"); err != nil {
		t.Fatal(err)
	}
	e := Entry{Status: 200, Body: []byte("old"), Expires: clock.Now().Add(time.Hour)}
	if err := s.Set(ctx, k, e, time.Hour, gen); !errors.Is(err, ErrGenerationChanged) {
		t.Fatalf("Set after an invalidation: got %v, want ErrGenerationChanged", err)
	}
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("the refused entry reached the tier")
	}
	// A Redis read that began before an invalidation but lands after it
	// is not inserted; an item already in the tier is not served.
	seq, start := s.seq.Load(), clock.Now()
	s.l1.Set(k, &l1Item{e: e, seq: seq, expires: e.Expires.UnixNano(), life: time.Hour})
	s.dropLocal("9")
	if _, _, ok := s.GetLocal(k); ok {
		t.Error("an item read before the invalidation was served after it")
	}
	s.l1.Invalidate(k)
	s.insert(k, e, 0, seq, start, maxItemLife)
	if _, ok := s.l1.GetIfPresent(k); ok {
		t.Error("an item read before the invalidation was inserted after it")
	}
	s.insert(k, e, 0, s.seq.Load(), clock.Now(), maxItemLife)
	if _, _, ok := s.GetLocal(k); !ok {
		t.Error("an item read after the invalidation was not served")
	}
}

// TestTieredKeepsRecordsWhileItemsMayLive: an invalidation record is kept
// exactly as long as an item it kills may be served: inserted up to
// recordSlack after it, then living up to the longest item lifetime.
func TestTieredKeepsRecordsWhileItemsMayLive(t *testing.T) {
	clock := newTClock()
	s := newTiered(t, miniredis.RunT(t).Addr(), clock, time.Hour)
	k := Key{"1", "s"}
	e := Entry{Status: 200, Expires: clock.Now().Add(5 * time.Minute)}
	s.insert(k, e, 0, s.seq.Load(), clock.Now(), maxItemLife)
	s.dropLocal("1")
	clock.Advance(5*time.Minute + recordSlack)
	s.dropLocal("2")
	if _, ok := s.inval.Load("1"); !ok {
		t.Error("record forgotten while an item it kills could still be served")
	}
	clock.Advance(time.Nanosecond)
	s.dropLocal("3")
	if _, ok := s.inval.Load("1"); ok {
		t.Error("record kept after every item it could kill has expired")
	}
	// A read slower than recordSlack is not inserted: a record it raced may
	// already be forgotten.
	slow := Key{"4", "s"}
	s.insert(slow, Entry{Expires: clock.Now().Add(time.Minute)}, 0, s.seq.Load(), clock.Now().Add(-recordSlack-1), maxItemLife)
	if _, ok := s.l1.GetIfPresent(slow); ok {
		t.Error("inserted the result of a read slower than recordSlack")
	}
}

// TestTieredKeepsHeader: the header survives both ways into the tier (a
// Set, and a read from Redis), is shared with hits without letting a hit's
// Add reach the next one, and counts against the tier's size.
func TestTieredKeepsHeader(t *testing.T) {
	srv := redistest.Start(t)
	clock := newTClock()
	a := replica(t, srv.Addr(), clock, time.Hour)
	b := replica(t, srv.Addr(), clock, time.Hour)
	k := Key{"1", "s"}
	ctx := context.Background()
	want := Entry{Status: 200, ContentType: "application/json", Header: sampleHeader(), Body: []byte("[]"),
		Expires: clock.Now().Add(time.Hour)}

	// Spare capacity, as a caller's buffer may have: a hit's Add must not
	// write into it.
	in := want
	in.Header = append(make(Header, 0, len(want.Header)+64), want.Header...)
	if err := a.Set(ctx, k, in, time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	got, _, ok := a.GetLocal(k) // put there by Set
	if !ok {
		t.Fatal("GetLocal after Set: got a miss, want a hit")
	}
	if d := diffEntry(got, want); d != "" {
		t.Errorf("after Set, %s: got %+v, want %+v", d, got, want)
	}
	one := got.Header.Add("Age", "1")
	again, _, _ := a.GetLocal(k)
	two := again.Header.Add("Age", "2")
	if v, _ := one.Get("Age"); string(v) != "1" {
		t.Errorf("got Age %q in the first hit's header, want 1: the second hit's Add wrote over it", v)
	}
	if v, _ := two.Get("Age"); string(v) != "2" || len(fields(again.Header)) != len(fields(want.Header)) {
		t.Errorf("got Age %q and stored fields %q, want 2 and the stored header unchanged", v, fields(again.Header))
	}

	if _, _, ok, err := b.Get(ctx, k); err != nil || !ok { // read from Redis into b's tier
		t.Fatalf("Get on the other replica: got ok=%v err=%v, want a hit", ok, err)
	}
	got, _, ok = b.GetLocal(k)
	if !ok {
		t.Fatal("GetLocal after a read from Redis: got a miss, want a hit")
	}
	if d := diffEntry(got, want); d != "" {
		t.Errorf("after a read from Redis, %s: got %+v, want %+v", d, got, want)
	}

	// The tier's weight counts the header (otter may apply it a little
	// later than the Set).
	wantBytes := uint64(len(want.Body) + len(want.Header) + len(want.ContentType) + len(k.ID) + len(k.Scope) + itemOverhead)
	testkit.WaitFor(t, 10*time.Second, "the tier to weigh the header", func() bool { return a.Stats().Bytes == wantBytes })
}
