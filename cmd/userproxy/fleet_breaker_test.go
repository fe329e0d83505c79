package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// probeCounter is the fake upstream, counting, once armed, the requests
// that arrive before the first of them has been answered: the probes a
// fleet sends at once when its breakers let trial calls through.
type probeCounter struct {
	http.Handler

	mu       sync.Mutex // protects the fields below
	armed    bool
	answered bool
	early    int
}

func (p *probeCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.armed && !p.answered {
		p.early++
	}
	p.mu.Unlock()
	p.Handler.ServeHTTP(w, r)
	p.mu.Lock()
	p.answered = p.armed
	p.mu.Unlock()
}

func (p *probeCounter) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.answered, p.early = true, false, 0
}

func (p *probeCounter) probes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.early
}

// startProbeCounter serves a probeCounter around a fake upstream handler
// on 127.0.0.1 until the test ends, and returns its base URL.
func startProbeCounter(t *testing.T, h *upstreamtest.Handler) (*probeCounter, string) {
	t.Helper()
	p := &probeCounter{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(p)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		h.Close() // release latency waits first, so Close does not wait on them
		srv.Close()
	})
	return p, srv.URL
}

// TestFleetUpstreamDownBreakerFleetWide: with the upstream down, the three
// replicas together make at most -breaker-failures + K failing calls
// before every one of them answers without calling it (its own breaker or
// the fleet's hint), not -breaker-failures per replica; once it is back,
// the fleet sends one probe, then every replica serves again.
//
// The replicas are driven one after another, each one request at a time
// and for users of its own, so that no call is shared (coalescing, the
// fill lease) and none overshoots while a breaker opens. One after another
// is what the bound needs: the hint spreads by reports of opened breakers,
// so replicas failing in step each reach -breaker-failures before any
// report exists.
func TestFleetUpstreamDownBreakerFleetWide(t *testing.T) {
	const (
		failures    = 5 // -breaker-failures
		quorum      = 2 // -breaker-fleet-quorum, K
		openTimeout = 2 * time.Second
		maxDrive    = 100 // requests per replica before the test gives up on its breaker
	)
	h := upstreamtest.NewHandler(upstreamtest.Options{Users: 100000, Lazy: true})
	h.SetFault(upstreamtest.FaultUnavailable)
	pc, upURL := startProbeCounter(t, h)
	// A cluster of its own: the fleet's breaker record has one name per
	// key prefix, and reports left by a failing run of this test would
	// open the upstream for the next test's replicas on a shared cluster.
	f := startFleet(t, redistest.StartCluster(t).URL(), upURL,
		"-breaker-failures", strconv.Itoa(failures), "-breaker-fleet-quorum", strconv.Itoa(quorum),
		"-breaker-open-timeout", openTimeout.String())
	userOf := func(replica, n int) string { return strconv.Itoa(5000 + 1000*replica + n) }

	failing := make([]int, fleetSize)
	for i, s := range f.replicas {
		for n := 0; ; n++ {
			if n == maxDrive {
				t.Fatalf("replica %d still calls the upstream after %d failing calls", i, maxDrive)
			}
			r := f.mustUser(t, s, userOf(i, n))
			if !r.wentUpstream() {
				if r.status != http.StatusServiceUnavailable {
					t.Fatalf("replica %d answered without the upstream: got %d %q, want 503", i, r.status, r.cacheStatus)
				}
				break
			}
			failing[i]++
		}
	}
	total := h.Requests()
	t.Logf("upstream down: failing calls, replica after replica, %v, %d in all (bound -breaker-failures + K = %d; one breaker per replica alone: %d)",
		failing, total, failures+quorum, fleetSize*failures)
	if total > failures+quorum {
		t.Errorf("failing upstream calls across the fleet: got %d, want at most %d", total, failures+quorum)
	}

	// The upstream recovers, slowly enough that trial calls sent at about
	// the same time overlap there.
	pc.arm()
	h.SetLatency(300 * time.Millisecond)
	h.SetFault(upstreamtest.FaultNone)
	back := make([]time.Duration, fleetSize)
	recovered := time.Now()
	concurrently(fleetSize, func(i int) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for n := maxDrive; time.Since(recovered) < hitsBackDeadline; n++ {
			r, err := f.user(f.replicas[i], userOf(i, n))
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			if r.status == http.StatusOK {
				back[i] = time.Since(recovered)
				return
			}
			<-tick.C
		}
		t.Errorf("replica %d: no 200 within %v of the upstream's recovery", i, hitsBackDeadline)
	})
	t.Logf("upstream back: first 200 per replica after %v (open timeout %v); %d trial calls reached it before the first was answered",
		back, openTimeout, pc.probes())
	if got := pc.probes(); got != 1 {
		t.Errorf("trial calls at the recovering upstream before the first was answered: got %d, want 1 for the fleet", got)
	}
}
