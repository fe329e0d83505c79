//go:build !race

// The race detector makes sync.Pool drop items on purpose and changes what
// escapes, so allocation counts hold only without it: .ci/run runs these
// tests again without -race.

package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/proxy"
)

// TestFrontHitAllocations: a hit through Front allocates nothing, with or
// without the client's request id (a generated one is built in place; the
// upstream's copy of it is made only on a miss).
func TestFrontHitAllocations(t *testing.T) {
	for _, id := range []string{"", "client-id-1"} {
		serve, c := frontHitRequest(benchHandler(t, cache.NewMemory(cache.MemoryOptions{})))
		if id != "" {
			c.Request.Header.Set(proxy.RequestIDHeader, id)
		}
		warmFront(t, serve, c) // the miss that stores the user, until its store is done
		got := testing.AllocsPerRun(100, func() {
			c.Response.Reset()
			serve(c)
		})
		if st := string(c.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(st, "userproxy; hit;") {
			t.Fatalf("request id %q: last answer %q, want a hit", id, st)
		}
		if got != 0 {
			t.Errorf("request id %q: %v allocations per hit, want 0", id, got)
		}
	}
}

// TestRedisHitAllocations: a hit read from Redis (no tier) allocates at
// most 10 times, alone or through the read batcher (its lone read: nothing
// else on the wire). What remains is go-redis's: the command, the reply's
// buffer as it grows, the pool's health check of the connection; and the
// keys' one string (see cache.readCall).
func TestRedisHitAllocations(t *testing.T) {
	const limit = 10
	srv := redistest.Start(t)
	client, err := cache.NewUniversalClient(srv.URL(), cache.ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	for _, batched := range []bool{false, true} {
		serve, c := frontHitRequest(benchHandler(t, cache.NewRedis(client, cache.RedisOptions{AutoPipeline: batched})))
		warmFront(t, serve, c)
		got := testing.AllocsPerRun(100, func() {
			c.Response.Reset()
			serve(c)
		})
		if st := string(c.Response.Header.Peek("Cache-Status")); !strings.HasPrefix(st, "userproxy; hit;") {
			t.Fatalf("batched %v: last answer %q, want a hit", batched, st)
		}
		t.Logf("batched %v: %v allocations per Redis-read hit", batched, got)
		if got > limit {
			t.Errorf("batched %v: %v allocations per Redis-read hit, want at most %d", batched, got, limit)
		}
	}
}
