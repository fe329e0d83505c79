package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// newLeases returns fill leases on a fresh backend of be's kind, with
// their announcement subscription running until the test ends.
func newLeases(t *testing.T, b backend) *FillLeases {
	t.Helper()
	l := NewFillLeases(NewRedis(b.client, RedisOptions{Prefix: b.prefix}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

// announcedOn waits for an announcement on ch.
func announcedOn(t *testing.T, ch <-chan LeaseState) LeaseState {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(testkit.DefaultWait):
		t.Fatal("no announcement")
		return LeaseState{}
	}
}

func TestFillLeases(t *testing.T) {
	ctx := context.Background()
	k := Key{ID: "42", Scope: "abc"}
	for _, be := range append(backends, clusterBackend, sentinelBackend) {
		t.Run(be.name, func(t *testing.T) {
			b := be.start(t)
			// Two replicas' views of the same Redis: leases are shared,
			// watchers and subscriptions are each replica's own.
			a, c := newLeases(t, b), newLeases(t, b)

			t.Run("one holder; the waiter hears its outcome", func(t *testing.T) {
				k := Key{ID: "1", Scope: k.Scope}
				announced, stop := c.Watch(k)
				defer stop()
				held, err := a.TryLease(ctx, k, time.Minute, "")
				if err != nil || len(held.Token) != tokenLen {
					t.Fatalf("first TryLease: %+v, err %v; want the lease", held, err)
				}
				w, err := c.TryLease(ctx, k, time.Minute, "")
				if err != nil || w.Token != "" || w.Holder != held.Token || w.Outcome != "" || w.Left <= 0 || w.Left > time.Minute {
					t.Fatalf("second TryLease: %+v, err %v; want held by %s for up to a minute", w, err, held.Token)
				}
				testkit.Await(t, "the waiter's subscription to be confirmed", func() bool {
					return publishReaches(t, a, c)
				})
				if ok, err := a.Release(ctx, k, held.Token, "s", time.Minute); err != nil || !ok {
					t.Fatalf("Release: %v, %v; want released", ok, err)
				}
				// The subscription's confirmation asks every watcher to
				// poll (a zero state); what counts is the announcement.
				got := announcedOn(t, announced)
				for got == (LeaseState{}) {
					got = announcedOn(t, announced)
				}
				if got.Holder != held.Token || got.Outcome != "s" {
					t.Fatalf("announced %+v, want holder %s, outcome s", got, held.Token)
				}
				// A waiter that missed the message finds the outcome.
				if st, err := c.TryLease(ctx, k, time.Minute, held.Token); err != nil || st.Token != "" || st.Outcome != "s" {
					t.Fatalf("the waiter's TryLease after release: %+v, err %v; want outcome s", st, err)
				}
				// A later request was not waiting on that lease: it takes
				// one of its own (after a write, the old outcome is news
				// of nothing).
				if st, err := c.TryLease(ctx, k, time.Minute, ""); err != nil || st.Token == "" {
					t.Fatalf("a later TryLease: %+v, err %v; want a lease of its own", st, err)
				}
			})

			t.Run("a waiter never gets an outcome from before its lease", func(t *testing.T) {
				k := Key{ID: "7", Scope: k.Scope}
				prev, _ := a.TryLease(ctx, k, time.Minute, "")
				if ok, err := a.Release(ctx, k, prev.Token, "eb", time.Minute); err != nil || !ok {
					t.Fatalf("Release: %v, %v", ok, err)
				}
				// A later miss takes a lease of its own despite the
				// outcome still lingering, which then goes.
				held, err := a.TryLease(ctx, k, time.Minute, "")
				if err != nil || held.Token == "" {
					t.Fatalf("TryLease after an outcome: %+v, %v; want a lease", held, err)
				}
				if st, err := c.TryLease(ctx, k, time.Minute, held.Token); err != nil || st.Outcome != "" || st.Holder != held.Token {
					t.Fatalf("waiter: %+v, %v; want the lease still held, no outcome", st, err)
				}
			})

			t.Run("an uncontended release announces nothing", func(t *testing.T) {
				k := Key{ID: "2", Scope: k.Scope}
				held, err := a.TryLease(ctx, k, time.Minute, "")
				if err != nil || held.Token == "" {
					t.Fatalf("TryLease: %+v, %v", held, err)
				}
				var n int64
				err = a.r.guard(func() (err error) {
					n, err = a.release.Run(ctx, a.r.client, []string{a.leaseKey(k), a.outcomeKey(k)}, held.Token, "s", 60000, a.channel, announcement(k, held.Token+"s")).Int64()
					return err
				})
				if err != nil || n != 1 {
					t.Fatalf("release script: %d, %v; want 1 (released, nobody to tell)", n, err)
				}
			})

			t.Run("a lease outlived by its holder is taken over", func(t *testing.T) {
				k := Key{ID: "3", Scope: k.Scope}
				old, err := a.TryLease(ctx, k, 50*time.Millisecond, "")
				if err != nil || old.Token == "" {
					t.Fatalf("TryLease: %+v, %v", old, err)
				}
				if !b.real {
					b.elapse(t, time.Second)
				}
				var now LeaseState
				testkit.Await(t, "the lease to expire and be taken over", func() bool {
					now, err = c.TryLease(ctx, k, time.Minute, old.Token)
					return err == nil && now.Token != ""
				})
				// The old holder's late release must not end the new one.
				if ok, err := a.Release(ctx, k, old.Token, "s", time.Minute); err != nil || ok {
					t.Fatalf("stale Release: %v, %v; want not ours", ok, err)
				}
				if st, _ := a.TryLease(ctx, k, time.Minute, old.Token); st.Token != "" || st.Outcome != "" || st.Holder != now.Token {
					t.Fatalf("after a stale release: %+v; want still held by %s", st, now.Token)
				}
				if ok, err := c.Release(ctx, k, now.Token, "eb", time.Minute); err != nil || !ok {
					t.Fatalf("Release: %v, %v", ok, err)
				}
			})

			t.Run("the outcome lingers only as long as asked", func(t *testing.T) {
				k := Key{ID: "4", Scope: k.Scope}
				held, _ := a.TryLease(ctx, k, time.Minute, "")
				if ok, err := a.Release(ctx, k, held.Token, "n", 50*time.Millisecond); err != nil || !ok {
					t.Fatalf("Release: %v, %v", ok, err)
				}
				if !b.real {
					b.elapse(t, time.Second)
				}
				testkit.Await(t, "the outcome to expire and the lease to be free", func() bool {
					st, err := c.TryLease(ctx, k, time.Minute, held.Token)
					return err == nil && st.Token != ""
				})
			})

			t.Run("scopes and users are apart", func(t *testing.T) {
				for _, other := range []Key{{ID: "5", Scope: "x"}, {ID: "5", Scope: "y"}, {ID: "6", Scope: "x"}} {
					if st, err := a.TryLease(ctx, other, time.Minute, ""); err != nil || st.Token == "" {
						t.Errorf("TryLease(%v): %+v, %v; want each key its own lease", other, st, err)
					}
				}
			})

			t.Run("invalid keys and outcomes", func(t *testing.T) {
				if _, err := a.TryLease(ctx, Key{ID: "4{2}"}, time.Minute, ""); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("TryLease: %v, want ErrInvalidKey", err)
				}
				if _, err := a.Release(ctx, k, "t", "", time.Minute); err == nil {
					t.Error("Release with an empty outcome: no error")
				}
			})
		})
	}
}

// publishReaches reports whether an announcement from a now reaches c's
// watchers (its subscription is confirmed).
func publishReaches(t *testing.T, a, c *FillLeases) bool {
	t.Helper()
	probe := Key{ID: "probe", Scope: "p"}
	ch, stop := c.Watch(probe)
	defer stop()
	if err := a.r.client.Publish(context.Background(), a.channel, announcement(probe, "0123456789abcdefs")).Err(); err != nil {
		t.Fatalf("publish: %v", err)
	}
	for {
		select {
		case st := <-ch:
			if st.Outcome == "s" {
				return true
			}
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
}

func TestFillLeasesRedisDown(t *testing.T) {
	b := newRealRedis(t)
	srv := b.client
	l := NewFillLeases(NewRedis(srv, RedisOptions{}))
	srv.Close() // every call now fails at once
	if _, err := l.TryLease(context.Background(), Key{ID: "1"}, time.Minute, ""); err == nil {
		t.Fatal("TryLease on a closed client: no error")
	}
}

func TestAnnouncementRoundTrip(t *testing.T) {
	for _, k := range []Key{{ID: "1", Scope: "abc"}, {ID: "a:b 7", Scope: ""}, {ID: "99", Scope: "12:3"}} {
		for _, o := range []string{"s", "u503 Wed, 21 Oct 2015 07:28:00 GMT", "1:2"} {
			got, gotO, ok := parseAnnouncement(announcement(k, o))
			if !ok || got != k || gotO != o {
				t.Errorf("round trip of %v %q: %v %q %v", k, o, got, gotO, ok)
			}
		}
	}
	for _, bad := range []string{"", "s", "3:ab", "1:a1:", "x:a1:1s", "99999999999:a", "1:a2:1s"[:6]} {
		if k, o, ok := parseAnnouncement(bad); ok {
			t.Errorf("parseAnnouncement(%q) = %v %q, want refused", bad, k, o)
		}
	}
}
