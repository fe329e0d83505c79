package cache

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream"
)

// flakyUpstream is a user API that is down (503) or up (200) on demand and
// counts what it answered.
type flakyUpstream struct {
	*httptest.Server
	down   atomic.Bool
	failed atomic.Int64 // 503s answered
	served atomic.Int64 // 200s answered
}

func newFlakyUpstream(t *testing.T) *flakyUpstream {
	t.Helper()
	u := &flakyUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if u.down.Load() {
			u.failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"down"}`))
			return
		}
		u.served.Add(1)
		w.Write([]byte(`[{"id":"1"}]`))
	}))
	t.Cleanup(u.Close)
	return u
}

// fleetReplicas is n upstream Clients, each with its own store and fleet
// handle on b's Redis (as n processes would be), keeping their views
// current until the test ends.
func fleetReplicas(t *testing.T, b backend, up *flakyUpstream, n, failures, quorum int, open time.Duration) []*upstream.Client {
	t.Helper()
	var cs []*upstream.Client
	for range n {
		store := NewRedis(b.client, RedisOptions{Prefix: b.prefix})
		c, err := upstream.New(upstream.Options{
			BaseURL:     up.URL,
			Timeout:     2 * time.Second,
			Breaker:     upstream.BreakerOptions{ConsecutiveFailures: uint32(failures), OpenTimeout: open},
			Fleet:       NewFleetBreaker(store, FleetOptions{Timeout: 100 * time.Millisecond}),
			FleetQuorum: quorum,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.CloseIdleConnections)
		testkit.Go(t, c.RunFleet)
		cs = append(cs, c)
	}
	return cs
}

// driveUntilRefused sends c one request at a time until its breaker (or
// the fleet's hint) refuses one, and returns how many it sent; it fails t
// on anything but a 503 or a refusal, or after 100 requests.
func driveUntilRefused(t *testing.T, c *upstream.Client) int {
	t.Helper()
	for sent := 0; sent < 100; sent++ {
		resp, err := c.Fetch(t.Context(), "1", upstream.Credentials{})
		switch {
		case errors.Is(err, upstream.ErrBreakerOpen):
			return sent
		case err != nil || resp.Status != http.StatusServiceUnavailable:
			t.Fatalf("Fetch on a down upstream: got (%v, %v), want a 503 or ErrBreakerOpen", resp, err)
		}
	}
	t.Fatal("100 requests and the breaker never refused one")
	return 0
}

// TestFleetReplicasShareTheBreaker: three replicas on one Redis, the
// upstream down, each replica driven one request at a time until it
// refuses: one replica after another, or all at once. Either way the fleet
// sends -breaker-failures + K failing calls at most, not three times
// -breaker-failures, and then every replica refuses at once. When the
// upstream comes back, one probe goes out when the lease lapses, and every
// replica closes without another failing call.
func TestFleetReplicasShareTheBreaker(t *testing.T) {
	for _, be := range []struct {
		name  string
		start func(t *testing.T) backend
	}{{"redis-server", func(t *testing.T) backend { return newRealRedis(t) }}, clusterBackend} {
		for _, atOnce := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/at-once=%v", be.name, atOnce), func(t *testing.T) {
				testFleetReplicas(t, be.start(t), atOnce)
			})
		}
	}
}

func testFleetReplicas(t *testing.T, b backend, atOnce bool) {
	const (
		failures = 5
		quorum   = 2
		open     = 2 * time.Second
	)
	up := newFlakyUpstream(t)
	up.down.Store(true)
	replicas := fleetReplicas(t, b, up, 3, failures, quorum, open)

	sent := make([]int, len(replicas))
	if atOnce {
		var wg sync.WaitGroup
		for i, c := range replicas {
			wg.Go(func() { sent[i] = driveUntilRefused(t, c) })
		}
		wg.Wait()
	} else {
		for i, c := range replicas {
			sent[i] = driveUntilRefused(t, c)
		}
	}
	total := int(up.failed.Load())
	t.Logf("failing upstream calls per replica %v, total %d (bound %d + %d = %d; without the hint %d)",
		sent, total, failures, quorum, failures+quorum, 3*failures)
	if total > failures+quorum {
		t.Errorf("failing upstream calls across the fleet: got %d, want at most %d", total, failures+quorum)
	}
	for i, c := range replicas {
		for range 3 {
			if _, err := c.Fetch(t.Context(), "1", upstream.Credentials{}); !errors.Is(err, upstream.ErrBreakerOpen) {
				t.Fatalf("replica %d once the fleet is open: got %v, want ErrBreakerOpen", i+1, err)
			}
		}
	}
	if got := int(up.failed.Load()); got != total {
		t.Errorf("failing upstream calls after every replica refused: got %d, want still %d", got, total)
	}

	// Recovery: each replica keeps asking, one request at a time.
	up.down.Store(false)
	recovered := time.Now()
	var wg sync.WaitGroup
	for i, c := range replicas {
		wg.Go(func() {
			testkit.WaitFor(t, 3*open, fmt.Sprintf("replica %d to answer again", i+1), func() bool {
				resp, err := c.Fetch(t.Context(), "1", upstream.Credentials{})
				if err == nil && resp.Status == http.StatusOK {
					return true
				}
				time.Sleep(20 * time.Millisecond) // a client's pace, not a spin
				return false
			})
		})
	}
	wg.Wait()
	t.Logf("after recovery: all 3 replicas answering %v after the upstream came back; %d failing calls in all, %d successful",
		time.Since(recovered).Round(time.Millisecond), up.failed.Load(), up.served.Load())
	if got := int(up.failed.Load()); got != total {
		t.Errorf("failing upstream calls after recovery: got %d, want still %d", got, total)
	}
	for i, c := range replicas {
		if got := c.State(); got != upstream.BreakerClosed {
			t.Errorf("replica %d breaker: got %s, want closed", i+1, got)
		}
	}
}

// TestFleetReplicasRedisPaused: with the hint in force and Redis then
// frozen, a replica goes back to its own breaker within the staleness of
// its view, and no Fetch waits on Redis past its timeout.
func TestFleetReplicasRedisPaused(t *testing.T) {
	const failures = 3
	up := newFlakyUpstream(t)
	up.down.Store(true)
	srv := newRealRedisServer(t)
	replicas := fleetReplicas(t, srv.backend, up, 3, failures, 2, time.Minute)
	driveUntilRefused(t, replicas[0])
	driveUntilRefused(t, replicas[1])
	c := replicas[2]
	testkit.Await(t, "the hint to be in force on replica 3", func() bool { return c.FleetState() == upstream.BreakerOpen })

	srv.Pause()
	t.Cleanup(srv.Resume)
	testkit.Await(t, "replica 3 to drop its view of a frozen Redis", func() bool { return c.FleetState() == upstream.BreakerClosed })
	before := up.failed.Load()
	var slowest time.Duration
	for range failures {
		start := time.Now()
		resp, err := c.Fetch(t.Context(), "1", upstream.Credentials{})
		slowest = max(slowest, time.Since(start))
		if err != nil || resp.Status != http.StatusServiceUnavailable {
			t.Fatalf("Fetch on its own: got (%v, %v), want the 503", resp, err)
		}
	}
	if _, err := c.Fetch(t.Context(), "1", upstream.Credentials{}); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Errorf("after %d failures on its own: got %v, want ErrBreakerOpen", failures, err)
	}
	t.Logf("with Redis frozen: %d failing calls to open replica 3's own breaker (-breaker-failures %d); slowest Fetch %v (Redis timeout 100ms)",
		up.failed.Load()-before, failures, slowest)
	if got := up.failed.Load() - before; got != failures {
		t.Errorf("failing calls with Redis frozen: got %d, want %d (the replica on its own)", got, failures)
	}
	if slowest > time.Second {
		t.Errorf("slowest Fetch with Redis frozen: %v, want about the 100ms Redis timeout at most", slowest)
	}
}

// realRedisServer is a redis-server of the test's own, and a backend on it.
type realRedisServer struct {
	*redistest.Server
	backend backend
}

func newRealRedisServer(t *testing.T) realRedisServer {
	t.Helper()
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return realRedisServer{srv, backend{name: "redis-server", client: client, real: true}}
}
