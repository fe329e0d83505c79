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

// receive waits for an announcement on ch.
func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(testkit.DefaultWait):
		t.Fatal("no announcement")
		return ""
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
				// The subscription's confirmation asks every watcher to
				// poll; what counts is the announcement after it.
				tok, _, _, err := a.TryLease(ctx, k, time.Minute)
				if err != nil || len(tok) != tokenLen {
					t.Fatalf("first TryLease: token %q, err %v; want the lease", tok, err)
				}
				if tok2, o, left, err := c.TryLease(ctx, k, time.Minute); err != nil || tok2 != "" || o != "" || left <= 0 || left > time.Minute {
					t.Fatalf("second TryLease: token %q outcome %q left %v err %v; want held by another for up to a minute", tok2, o, left, err)
				}
				testkit.Await(t, "the waiter's subscription to be confirmed", func() bool {
					// Published to nobody until it is: retry the
					// announcement path through a fresh key each time.
					return publishReaches(t, a, c)
				})
				if ok, err := a.Release(ctx, k, tok, "s", time.Minute); err != nil || !ok {
					t.Fatalf("Release: %v, %v; want released", ok, err)
				}
				for o := receive(t, announced); o != "s"; o = receive(t, announced) {
					if o != "" {
						t.Fatalf("announced %q, want s", o)
					}
				}
				// A poller that missed the message finds the outcome.
				if tok, o, _, err := c.TryLease(ctx, k, time.Minute); err != nil || tok != "" || o != "s" {
					t.Fatalf("TryLease after release: token %q outcome %q err %v; want outcome s", tok, o, err)
				}
			})

			t.Run("an uncontended release announces nothing", func(t *testing.T) {
				k := Key{ID: "2", Scope: k.Scope}
				tok, _, _, err := a.TryLease(ctx, k, time.Minute)
				if err != nil || tok == "" {
					t.Fatalf("TryLease: %q, %v", tok, err)
				}
				var n int64
				err = a.r.guard(func() (err error) {
					n, err = a.release.Run(ctx, a.r.client, []string{a.leaseKey(k), a.outcomeKey(k)}, tok, "s", 60000, a.channel, announcement(k, "s")).Int64()
					return err
				})
				if err != nil || n != 1 {
					t.Fatalf("release script: %d, %v; want 1 (released, nobody to tell)", n, err)
				}
			})

			t.Run("a lease outlived by its holder is taken over", func(t *testing.T) {
				k := Key{ID: "3", Scope: k.Scope}
				old, _, _, err := a.TryLease(ctx, k, 50*time.Millisecond)
				if err != nil || old == "" {
					t.Fatalf("TryLease: %q, %v", old, err)
				}
				if !b.real {
					b.elapse(t, time.Second)
				}
				var tok string
				testkit.Await(t, "the lease to expire and be taken over", func() bool {
					tok, _, _, err = c.TryLease(ctx, k, time.Minute)
					return err == nil && tok != ""
				})
				// The old holder's late release must not end the new one.
				if ok, err := a.Release(ctx, k, old, "s", time.Minute); err != nil || ok {
					t.Fatalf("stale Release: %v, %v; want not ours", ok, err)
				}
				if tok2, o, _, _ := a.TryLease(ctx, k, time.Minute); tok2 != "" || o != "" {
					t.Fatalf("after a stale release: token %q outcome %q; want still held", tok2, o)
				}
				if ok, err := c.Release(ctx, k, tok, "eb", time.Minute); err != nil || !ok {
					t.Fatalf("Release: %v, %v", ok, err)
				}
			})

			t.Run("the outcome lingers only as long as asked", func(t *testing.T) {
				k := Key{ID: "4", Scope: k.Scope}
				tok, _, _, _ := a.TryLease(ctx, k, time.Minute)
				if ok, err := a.Release(ctx, k, tok, "n", 50*time.Millisecond); err != nil || !ok {
					t.Fatalf("Release: %v, %v", ok, err)
				}
				if !b.real {
					b.elapse(t, time.Second)
				}
				testkit.Await(t, "the outcome to expire and the lease to be free", func() bool {
					tok, _, _, err := c.TryLease(ctx, k, time.Minute)
					return err == nil && tok != ""
				})
			})

			t.Run("scopes and users are apart", func(t *testing.T) {
				for _, other := range []Key{{ID: "5", Scope: "x"}, {ID: "5", Scope: "y"}, {ID: "6", Scope: "x"}} {
					if tok, _, _, err := a.TryLease(ctx, other, time.Minute); err != nil || tok == "" {
						t.Errorf("TryLease(%v): %q, %v; want each key its own lease", other, tok, err)
					}
				}
			})

			t.Run("invalid keys and outcomes", func(t *testing.T) {
				if _, _, _, err := a.TryLease(ctx, Key{ID: "4{2}"}, time.Minute); !errors.Is(err, ErrInvalidKey) {
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
	if err := a.r.client.Publish(context.Background(), a.channel, announcement(probe, "s")).Err(); err != nil {
		t.Fatalf("publish: %v", err)
	}
	for {
		select {
		case o := <-ch:
			if o == "s" {
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
	if _, _, _, err := l.TryLease(context.Background(), Key{ID: "1"}, time.Minute); err == nil {
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
