//go:build !race

// The race detector makes sync.Pool drop items on purpose and changes what
// escapes, so allocation counts hold only without it: .ci/run runs these
// tests again without -race.

package proxy_test

import (
	"strings"
	"testing"

	"github.com/userproxy/userproxy/cache"
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
