package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/testkit"
)

// pids returns the process ids of the running servers.
func pids(servers ...*Server) []int {
	var out []int
	for _, s := range servers {
		s.mu.Lock()
		if s.proc != nil {
			out = append(out, s.proc.Pid)
		}
		s.mu.Unlock()
	}
	return out
}

// checkGone fails t for each pid that is still a process.
func checkGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d after cleanup: kill -0 got %v, want ESRCH", pid, err)
		}
	}
}

// newClient is cache.NewUniversalClient on url, closed by t.Cleanup.
func newClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	c, err := cache.NewUniversalClient(url, cache.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient(%q): %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartCluster(t *testing.T) {
	var started []int
	t.Run("serves", func(t *testing.T) {
		c := StartCluster(t)
		started = pids(c.Nodes()...)
		if len(started) != 6 {
			t.Fatalf("got %d running nodes, want 6", len(started))
		}
		for _, n := range c.Nodes() {
			if !strings.HasPrefix(n.Addr(), "127.0.0.1:") || n.port > maxClusterPort {
				t.Errorf("node address %s: want 127.0.0.1 and a port up to %d", n.Addr(), maxClusterPort)
			}
			info, err := doString(n.Addr(), "CLUSTER", "INFO")
			if err != nil {
				t.Fatalf("CLUSTER INFO on %s: %v", n.Addr(), err)
			}
			if got := infoField(info, "cluster_state"); got != "ok" {
				t.Errorf("node %s: got cluster_state:%s, want ok", n.Addr(), got)
			}
		}
		if got := len(c.Masters()); got != 3 {
			t.Errorf("got %d masters, want 3", got)
		}
		if got, want := c.URL(), "redis-cluster://"+strings.Join(c.Addrs(), ","); got != want {
			t.Errorf("got URL %q, want %q", got, want)
		}

		client := newClient(t, c.URL())
		if _, ok := client.(*redis.ClusterClient); !ok {
			t.Fatalf("URL() gave a %T, want a *redis.ClusterClient", client)
		}
		ctx := context.Background()
		// Enough keys that every master holds some.
		for i := range 30 {
			k := fmt.Sprintf("k%d", i)
			if err := client.Set(ctx, k, i, time.Minute).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
			if got, err := client.Get(ctx, k).Int(); err != nil || got != i {
				t.Fatalf("GET %s: got %d, %v, want %d", k, got, err, i)
			}
		}
		for _, m := range c.Masters() {
			n, err := do(m.Addr(), "DBSIZE")
			if err != nil || n.(int64) == 0 {
				t.Errorf("DBSIZE on master %s: got %v, %v, want keys", m.Addr(), n, err)
			}
		}

		victim := c.Masters()[0]
		c.Kill(victim)
		if _, err := do(victim.Addr(), "PING"); err == nil {
			t.Errorf("PING after Kill(%s): got an answer, want a connection error", victim.Addr())
		}
	})
	checkGone(t, started)
}

func TestStartSentinel(t *testing.T) {
	var started []int
	t.Run("serves and fails over", func(t *testing.T) {
		st := StartSentinel(t)
		started = pids(append([]*Server{st.Master(), st.Replica()}, st.Sentinels()...)...)
		if len(started) != 5 {
			t.Fatalf("got %d running processes, want 5", len(started))
		}
		if got := st.MasterName(); got != "mymaster" {
			t.Errorf("got master name %q, want mymaster", got)
		}
		client := newClient(t, st.URL())
		ctx := context.Background()
		if err := client.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if got, err := client.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET: got %q, %v, want v", got, err)
		}
		if got, err := doString(st.Master().Addr(), "GET", "k"); err != nil || got != "v" {
			t.Errorf("GET on the master itself: got %q, %v, want v", got, err)
		}

		st.KillMaster()
		// The Sentinels call the master down after 1s and promote the
		// replica; the client follows them there.
		testkit.WaitFor(t, 30*time.Second, "a SET after KillMaster to reach the promoted replica", func() bool {
			return client.Set(ctx, "after", "failover", time.Minute).Err() == nil
		})
		if got, err := doString(st.Replica().Addr(), "GET", "after"); err != nil || got != "failover" {
			t.Errorf("GET on the promoted replica: got %q, %v, want failover", got, err)
		}
	})
	checkGone(t, started)
}

func TestSharedClusterStartsOnceAndCloses(t *testing.T) {
	var s SharedCluster
	c := s.Get(t)
	if again := s.Get(t); again != c {
		t.Errorf("second Get: got another cluster, want the first one")
	}
	started := pids(c.Nodes()...)
	if len(started) != 6 {
		t.Fatalf("got %d running nodes, want 6", len(started))
	}
	dir := s.dir
	s.Close()
	checkGone(t, started)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory after Close: got %v, want it gone", err)
	}
	s.Close() // closing twice is harmless
}

func TestSharedSentinelStartsOnceAndCloses(t *testing.T) {
	var s SharedSentinel
	st := s.Get(t)
	if again := s.Get(t); again != st {
		t.Errorf("second Get: got another sentinel set, want the first one")
	}
	started := pids(append([]*Server{st.Master(), st.Replica()}, st.Sentinels()...)...)
	if len(started) != 5 {
		t.Fatalf("got %d running processes, want 5", len(started))
	}
	client := newClient(t, st.URL())
	ctx := context.Background()
	if err := client.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET through the shared set: %v", err)
	}
	client.Close() // before Close: its Sentinel connections would fail
	dir := s.dir
	s.Close()
	checkGone(t, started)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sentinel directory after Close: got %v, want it gone", err)
	}
	s.Close() // closing twice is harmless
}
