package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

// childArgsEnv carries a child replica's flags (one per line) from
// startProcess to TestMain.
const childArgsEnv = "USERPROXY_TEST_CHILD_ARGS"

// runChild runs a replica in this process and prints its listen and admin
// addresses on one line once it listens.
func runChild(args []string) int {
	ready := make(chan [2]string, 1)
	go func() {
		addrs := <-ready
		fmt.Println(addrs[0] + " " + addrs[1])
	}()
	return run(context.Background(), args, func(string) (string, bool) { return "", false }, os.Stdout, os.Stderr, ready)
}

// startProcess starts a replica in a process of its own (this test binary,
// re-executed), which the test can SIGKILL: a replica that dies, rather
// than one that shuts down gracefully. It is killed at cleanup if still
// running.
func startProcess(t *testing.T, args ...string) (s *started, proc *os.Process) {
	t.Helper()
	args = append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\n"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		proxy, admin, found := strings.Cut(l, " ")
		if !ok || !found {
			t.Fatalf("replica process did not start: %s", logs.String())
		}
		return &started{proxy: "http://" + proxy, admin: "http://" + admin, logs: logs}, cmd.Process
	case <-time.After(testkit.DefaultWait):
		t.Fatalf("replica process did not start within %v: %s", testkit.DefaultWait, logs.String())
	}
	return nil, nil
}

// TestFleetLeaseHolderKilledMidFill: the replica holding a cold user's fill
// lease is SIGKILLed while its upstream call is out. The replicas waiting on
// it answer once its lease expires and one of them takes over: two upstream
// calls in all, every waiter answered 200 within the upstream timeout and a
// second of the kill (logged; asserted: within the fill timeout, so no
// waiter timed out).
func TestFleetLeaseHolderKilledMidFill(t *testing.T) {
	const (
		upstreamTimeout = time.Second
		waitersEach     = 20
	)
	id := fleetIDs(7000, 1)[0]
	body := `[{"id":"` + id + `","username":"holder-test"}]`
	var calls atomic.Int64
	first := make(chan struct{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(first)
			select { // the holder's call: never answered while it lives
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) }) // before up.Close: LIFO

	url := sharedCluster.Get(t).URL()
	args := []string{"-upstream-url", up.URL, "-redis-url", url, "-key-secret", fleetKeySecret,
		"-upstream-timeout", upstreamTimeout.String(), "-l1-ttl", "0"}
	holder, proc := startProcess(t, args...)
	f := &fleet{client: testkit.HTTPClient(t)}
	waiters := []*started{start(t, args...), start(t, args...)}

	go f.user(holder, id) // its answer never comes: the replica dies
	select {
	case <-first:
	case <-time.After(testkit.DefaultWait):
		t.Fatal("the holder's upstream call never came")
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	var wg sync.WaitGroup
	replies := make([]reply, 2*waitersEach)
	errs := make([]error, len(replies))
	for i := range replies {
		wg.Go(func() { replies[i], errs[i] = f.user(waiters[i%2], id) })
	}
	wg.Wait()
	var slowest time.Duration
	for i, r := range replies {
		if errs[i] != nil || r.status != http.StatusOK || r.body != body {
			t.Fatalf("waiter %d: %v %d %.80q (%s), want 200 and the user", i, errs[i], r.status, r.body, r.cacheStatus)
		}
		slowest = max(slowest, r.elapsed)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("upstream calls: %d, want 2 (the dead holder's and one taking over)", n)
	}
	var expired, won float64
	for _, s := range waiters {
		expired += metricValue(t, f.client, s, `userproxy_fill_leases_total{result="expired"}`)
		won += metricValue(t, f.client, s, `userproxy_fill_leases_total{result="won"}`)
	}
	if expired != 1 || won != 0 {
		t.Errorf("leases taken over %v, won %v; want 1 and 0", expired, won)
	}
	t.Logf("holder killed mid-fill: %d waiters on 2 replicas answered within %v of the kill, slowest request %v (goal: upstream timeout %v + 1s)",
		len(replies), time.Since(killed).Round(time.Millisecond), slowest.Round(time.Millisecond), upstreamTimeout)
}

// TestFleetStampedeWithRedisFrozen: Redis stops answering (SIGSTOP) before
// a stampede spread over three replicas. Each replica makes at most one
// upstream call (its local single flight), nobody errs, and no request
// waits on Redis past -redis-timeout per operation (the slowest is logged).
func TestFleetStampedeWithRedisFrozen(t *testing.T) {
	const (
		perReplica   = 30
		redisTimeout = 50 * time.Millisecond
		latency      = 50 * time.Millisecond
	)
	srv := redistest.Start(t)
	up := newFleetUpstream(t, latency)
	f := startFleet(t, srv.URL(), up.URL, "-l1-ttl", "0", "-redis-timeout", redisTimeout.String())
	id := fleetIDs(7100, 1)[0]
	body := want(t, up, id)
	srv.Pause()
	defer srv.Resume()

	replies := make([]reply, fleetSize*perReplica)
	errs := make([]error, len(replies))
	concurrently(len(replies), func(i int) { replies[i], errs[i] = f.user(f.replicas[i%fleetSize], id) })
	var slowest time.Duration
	for i, r := range replies {
		if errs[i] != nil || r.status != http.StatusOK || r.body != body {
			t.Fatalf("request %d: %v %d %.60q (%s), want 200 and the user", i, errs[i], r.status, r.body, r.cacheStatus)
		}
		slowest = max(slowest, r.elapsed)
	}
	if n := up.RequestsFor(id); n < 1 || n > fleetSize {
		t.Errorf("upstream calls: %d, want one per replica at most", n)
	}
	t.Logf("Redis frozen: %d requests over %d replicas, %d upstream calls, slowest %v (upstream %v, -redis-timeout %v: a read and a store)",
		len(replies), fleetSize, up.RequestsFor(id), slowest.Round(time.Millisecond), latency, redisTimeout)
}
