package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

// backend is a Redis the tests can run against, plus its way of letting time pass.
type backend struct {
	name   string
	client redis.UniversalClient
	// ttl is what the shared suite stores with: long where time can jump,
	// short on a real server, where the test has to wait it out.
	ttl time.Duration
	// elapse moves the server's clock forward (miniredis only).
	elapse func(t *testing.T, d time.Duration)
	// real is true for a real redis-server, whose clock cannot be moved.
	real bool
	// prefix is the key prefix (RedisOptions.Prefix) the test must use:
	// its own on a Redis other tests share, "" (the default) on its own.
	prefix string
}

func newMiniredis(t *testing.T) backend {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	return backend{
		name:   "miniredis",
		client: client,
		ttl:    time.Minute,
		elapse: func(t *testing.T, d time.Duration) { mr.FastForward(d) },
	}
}

func newRealRedis(t testing.TB) backend {
	t.Helper()
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return backend{name: "redis-server", client: client, ttl: 300 * time.Millisecond, real: true}
}

func redisFixture(b backend, opts RedisOptions) fixture {
	r := NewRedis(b.client, opts)
	return fixture{
		store: r,
		ttl:   b.ttl,
		expire: func(t *testing.T, k Key) {
			t.Helper()
			if !b.real {
				b.elapse(t, b.ttl)
				return
			}
			// Wait, bounded, until the server itself has dropped the key.
			testkit.WaitFor(t, 5*time.Second, "the server to drop the expired key", func() bool {
				n, err := b.client.Exists(context.Background(), r.entryKey(k)).Result()
				return err == nil && n == 0
			})
		},
		putRaw: func(t *testing.T, k Key, raw []byte) {
			t.Helper()
			if opts.Sealer != nil {
				// Sealed, so that what the store fails on is the entry
				// inside, as it would be for a bad entry a replica wrote.
				raw = opts.Sealer.seal(raw, r.entryKey(k))
			}
			if err := b.client.Set(context.Background(), r.entryKey(k), raw, time.Hour).Err(); err != nil {
				t.Fatalf("writing raw entry: %v", err)
			}
		},
	}
}

// backends lists the Redis implementations every Redis test runs against.
var backends = []struct {
	name  string
	start func(t *testing.T) backend
}{
	{"miniredis", newMiniredis},
	{"redis-server", func(t *testing.T) backend { return newRealRedis(t) }},
}

func TestRedisStore(t *testing.T) {
	for _, be := range append(backends, clusterBackend, sentinelBackend) {
		for _, ap := range []bool{false, true} {
			for _, sealed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/autopipeline=%v/sealed=%v", be.name, ap, sealed), func(t *testing.T) {
					testStore(t, func(t *testing.T) fixture {
						b := be.start(t)
						opts := RedisOptions{AutoPipeline: ap, Prefix: b.prefix}
						if sealed {
							opts.Sealer = mustSealer(t, key32('a'))
						}
						return redisFixture(b, opts)
					})
				})
			}
		}
	}
}

func TestRedisKeyLayout(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		prefix   string
		wantKeys []string
	}{
		{"", []string{"userproxy:{42}:5f0c", "userproxy:{42}:gen"}},
		{"staging:up", []string{"staging:up:{42}:5f0c", "staging:up:{42}:gen"}},
	}
	for _, be := range backends {
		for _, tt := range tests {
			t.Run(be.name+"/"+tt.prefix, func(t *testing.T) {
				b := be.start(t)
				r := NewRedis(b.client, RedisOptions{Prefix: tt.prefix})
				k := Key{ID: "42", Scope: "5f0c"}
				mustSet(t, r, k, Entry{Status: 200, Body: []byte("[]")}, time.Minute, 0)
				if err := r.Invalidate(ctx, "42"); err != nil {
					t.Fatal(err)
				}
				keys, err := b.client.Keys(ctx, "*").Result()
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(keys)
				if !slices.Equal(keys, tt.wantKeys) {
					t.Errorf("got keys %q, want %q", keys, tt.wantKeys)
				}
				// Every key of user 42 hashes on "42" alone, so they share a
				// Cluster slot (Redis hashes the text between the first { and
				// the first } after it).
				for _, key := range keys {
					open := strings.IndexByte(key, '{')
					end := strings.IndexByte(key[open:], '}')
					if open < 0 || end < 0 || key[open+1:open+end] != "42" {
						t.Errorf("key %q: got no {42} hash tag, want one", key)
					}
				}
			})
		}
	}
}

// pttl returns the remaining TTL of key (-1: none, -2: no key).
func pttl(t *testing.T, c redis.UniversalClient, key string) time.Duration {
	t.Helper()
	d, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	return d
}

func TestRedisGenerationKeyOutlivesEntries(t *testing.T) {
	ctx := context.Background()
	const genTTL = time.Hour
	k := Key{ID: "42", Scope: "aa"}
	e := Entry{Status: 200, Body: []byte("[]")}
	tests := []struct {
		name    string
		prepare func(t *testing.T, r *Redis, c redis.UniversalClient) uint64 // returns the gen to Set with
		ttl     time.Duration
		wantGen func(d time.Duration) bool // acceptable generation key TTL
	}{
		{"no generation key yet", func(*testing.T, *Redis, redis.UniversalClient) uint64 { return 0 },
			time.Minute, func(d time.Duration) bool { return d > 59*time.Second && d <= time.Minute }},
		{"entry longer than GenerationTTL", func(t *testing.T, r *Redis, _ redis.UniversalClient) uint64 {
			if err := r.Invalidate(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			return 1
		}, 3 * genTTL, func(d time.Duration) bool { return d > 3*genTTL-time.Second }},
		{"entry shorter than a bumped generation", func(t *testing.T, r *Redis, _ redis.UniversalClient) uint64 {
			if err := r.Invalidate(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			return 1
		}, time.Minute, func(d time.Duration) bool { return d > genTTL-time.Second && d <= genTTL }},
		{"generation key without TTL stays", func(t *testing.T, _ *Redis, c redis.UniversalClient) uint64 {
			if err := c.Set(ctx, "userproxy:{42}:gen", "9", 0).Err(); err != nil {
				t.Fatal(err)
			}
			return 9
		}, time.Minute, func(d time.Duration) bool { return d == -1 }},
	}
	for _, be := range backends {
		for _, tt := range tests {
			t.Run(be.name+"/"+tt.name, func(t *testing.T) {
				b := be.start(t)
				r := NewRedis(b.client, RedisOptions{GenerationTTL: genTTL})
				gen := tt.prepare(t, r, b.client)
				mustSet(t, r, k, e, tt.ttl, gen)
				// Generation key first: both TTLs fall at the same rate, so
				// the entry's, read later, cannot exceed it if the invariant holds.
				genKeyTTL := pttl(t, b.client, r.genKey(k.ID))
				entryTTL := pttl(t, b.client, r.entryKey(k))
				if !tt.wantGen(genKeyTTL) {
					t.Errorf("got generation key TTL %v (entry TTL %v), not what this case wants", genKeyTTL, entryTTL)
				}
				if genKeyTTL != -1 && genKeyTTL < entryTTL {
					t.Errorf("got generation key TTL %v, want at least the entry's %v", genKeyTTL, entryTTL)
				}
			})
		}
	}
}

func TestRedisInvalidateExtendsShortGenerationKey(t *testing.T) {
	// A generation key created by Set carries the entry's short TTL. Once
	// bumped it must live GenerationTTL, or it could expire mid-fill and
	// restart at 0, the very generation a stale fill read.
	ctx := context.Background()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := be.start(t)
			r := NewRedis(b.client, RedisOptions{GenerationTTL: time.Hour})
			k := Key{ID: "42", Scope: "aa"}
			mustSet(t, r, k, Entry{Status: 200}, 2*time.Second, 0)
			if err := r.Invalidate(ctx, k.ID); err != nil {
				t.Fatal(err)
			}
			if got := pttl(t, b.client, r.genKey(k.ID)); got < time.Hour-time.Second {
				t.Errorf("got generation key TTL %v after Invalidate, want about 1h", got)
			}
		})
	}
}

func TestRedisExpiredGenerationKeyDoesNotReviveEntries(t *testing.T) {
	b := newMiniredis(t)
	r := NewRedis(b.client, RedisOptions{GenerationTTL: time.Hour})
	k := Key{ID: "42", Scope: "aa"}
	mustSet(t, r, k, Entry{Status: 200}, 30*time.Minute, 0)
	if err := r.Invalidate(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, r, k, 1)
	b.elapse(t, time.Hour) // the generation key expires: generation 0 again
	mustMiss(t, r, k, 0)   // and the gen-0 entry is long gone with it
}

func TestRedisCorruptGenerationIsAnError(t *testing.T) {
	b := newMiniredis(t)
	r := NewRedis(b.client, RedisOptions{})
	k := Key{ID: "42", Scope: "aa"}
	if err := b.client.Set(context.Background(), r.genKey(k.ID), "not-a-number", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := r.Get(context.Background(), k); err == nil || ok {
		t.Errorf("got ok=%v err=%v, want an error", ok, err)
	}
}

func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := NewRedis(client, RedisOptions{})
	k := Key{ID: "42", Scope: "aa"}
	mustSet(t, r, k, Entry{Status: 200}, time.Minute, 0) // warm the pool
	srv.Kill()

	const budget = 300 * time.Millisecond
	ops := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, _, _, err := r.Get(ctx, k); return err }},
		{"Set", func(ctx context.Context) error { return r.Set(ctx, k, Entry{Status: 200}, time.Minute, 0) }},
		{"Invalidate", func(ctx context.Context) error { return r.Invalidate(ctx, k.ID) }},
		{"Ping", r.Ping},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			start := time.Now()
			err := op.do(ctx)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatalf("got nil error with Redis down, want an error")
			}
			if errors.Is(err, ErrGenerationChanged) {
				t.Errorf("got %v, want a store error", err)
			}
			// Loose on purpose: this tells "bounded by the caller's
			// deadline" from "hangs", not fast from slow (a loaded CI
			// machine must not fail it).
			if elapsed > budget+2*time.Second {
				t.Errorf("took %v, want it bounded by the %v deadline", elapsed, budget)
			}
		})
	}
}
