package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// TestFleetStampedeOneUpstreamCall: 150 concurrent requests for one cold
// user, 50 through each replica, cost one upstream call across the fleet
// (the fill lease); every client gets the user, and those answered from
// another request's fill (on this replica or another) say "collapsed".
func TestFleetStampedeOneUpstreamCall(t *testing.T) {
	const perReplica = 50
	up := newFleetUpstream(t, 50*time.Millisecond)
	f := startFleet(t, sharedCluster.Get(t).URL(), up.URL)
	id, direct := "1001", "1002"
	body := want(t, up, id)

	// The baselines: one call at a time straight to the upstream, and the
	// same stampede straight at it (the clients' own cost included).
	directGet := func() time.Duration {
		req, _ := http.NewRequest(http.MethodGet, up.URL+"/api/users/"+direct, nil)
		req.SetBasicAuth(fleetCred.Username, fleetCred.Password)
		begin := time.Now()
		resp, err := f.client.Do(req)
		if err != nil {
			t.Errorf("direct GET: %v", err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(begin)
	}
	lone := make([]time.Duration, 20)
	for i := range lone {
		lone[i] = directGet()
	}
	directTimes := make([]time.Duration, fleetSize*perReplica)
	concurrently(len(directTimes), func(i int) { directTimes[i] = directGet() })

	replies := make([]reply, fleetSize*perReplica)
	errs := make([]error, len(replies))
	concurrently(len(replies), func(i int) {
		replies[i], errs[i] = f.user(f.replicas[i%fleetSize], id)
	})

	var times []time.Duration
	fills := make([]int, fleetSize)     // answers from a fill of the replica's own
	collapsed := make([]int, fleetSize) // answers from another request's fill
	for i, r := range replies {
		at := i % fleetSize
		if errs[i] != nil {
			t.Errorf("request %d through replica %d: %v", i, at, errs[i])
			continue
		}
		times = append(times, r.elapsed)
		if r.status != http.StatusOK || r.body != body {
			t.Errorf("request %d through replica %d: got %d %.60q (%s), want 200 and the user", i, at, r.status, r.body, r.cacheStatus)
		}
		switch {
		case r.collapsed():
			collapsed[at]++
		case !r.hit():
			fills[at]++
		}
	}
	for i, s := range f.replicas {
		counts := map[string]int{}
		for j := i; j < len(replies); j += fleetSize {
			counts[replies[j].cacheStatus]++
		}
		t.Logf("replica %d: Cache-Status counts %v; fill leases won %v waited %v", i, counts,
			metricValue(t, f.client, s, `userproxy_fill_leases_total{result="won"}`),
			metricValue(t, f.client, s, `userproxy_fill_leases_total{result="waited"}`))
	}
	if len(times) > 0 {
		p50, loneP50 := percentile(times, 0.5), percentile(lone, 0.5)
		t.Logf("p50: stampede through the fleet %v; a lone call straight to the upstream %v (+%v; goal ≤ +3ms); the stampede straight at it %v",
			p50.Round(time.Microsecond), loneP50.Round(time.Microsecond), (p50 - loneP50).Round(time.Microsecond), percentile(directTimes, 0.5).Round(time.Microsecond))
	}
	if got := up.RequestsFor(id); got != 1 {
		t.Errorf("upstream calls for the user: got %d, want 1 across the fleet", got)
	}
	if n := fills[0] + fills[1] + fills[2]; n != 1 {
		t.Errorf("answers from a fill of their own replica (neither a hit nor collapsed): got %d %v, want 1", n, fills)
	}
	// Requests that reached a replica after the entry was stored are hits;
	// with all of them sent during the upstream's 50ms, each replica that
	// did not fill answered some from the fleet's fill: "collapsed".
	for i := range fleetSize {
		if fills[i] == 0 && collapsed[i] == 0 {
			t.Errorf("replica %d, which did not fill: no answer says collapsed, want those from the other replica's fill to", i)
		}
	}
}

// TestFleetWriteThroughOneReplicaReachesTheOthers: after a write through
// replica A succeeds, B and C, whose in-process tiers held the old body,
// serve the new one at once: the write returns once its invalidation has
// reached the node every replica subscribes on (Tiered.Invalidate). One
// stale read, cleared within 100ms, is allowed (a replica short of CPU may
// read before applying a message it has received); more is an error.
func TestFleetWriteThroughOneReplicaReachesTheOthers(t *testing.T) {
	const (
		rounds           = 10
		l1TTL            = time.Second // the -l1-ttl default
		stalenessAllowed = 100 * time.Millisecond
	)
	up := newFleetUpstream(t, 0)
	f := startFleet(t, sharedCluster.Get(t).URL(), up.URL)
	a, others := f.replicas[0], f.replicas[1:]
	id := "2001"

	staleAtOnce := 0
	var longest time.Duration
	for round := range rounds {
		old := want(t, up, id)
		f.mustUser(t, a, id)
		for i, s := range others {
			// Twice: the second read is answered by the tier.
			for range 2 {
				if r := f.mustUser(t, s, id); r.status != http.StatusOK || r.body != old {
					t.Fatalf("round %d, replica %d before the write: got %d %.60q (%s), want 200 and the user", round, i+1, r.status, r.body, r.cacheStatus)
				}
			}
		}

		name := fmt.Sprintf("Renamed-%d", round)
		req, _ := http.NewRequest(http.MethodPut, a.proxy+"/api/users/"+id, strings.NewReader(`{"first_name":"`+name+`"}`))
		req.SetBasicAuth(fleetCred.Username, fleetCred.Password)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		written := time.Now()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: PUT through replica 0: got %d, want 200", round, resp.StatusCode)
		}
		updated := want(t, up, id)
		if !strings.Contains(updated, name) {
			t.Fatalf("round %d: the upstream did not take the write: %.200q", round, updated)
		}

		for i, s := range others {
			if r := f.mustUser(t, s, id); r.status != http.StatusOK || r.body != updated {
				staleAtOnce++
				t.Logf("round %d: replica %d served %.60q (%s) right after the write", round, i+1, r.body, r.cacheStatus)
				// Twice -l1-ttl: the design's bound plus the reads' own time.
				testkit.WaitFor(t, 2*l1TTL, fmt.Sprintf("replica %d to serve the new body", i+1), func() bool {
					return f.mustUser(t, s, id).body == updated
				})
				longest = max(longest, time.Since(written))
			}
		}
	}
	var tierHits float64
	for _, s := range others {
		tierHits += metricValue(t, f.client, s, "userproxy_l1_hits_total")
	}
	t.Logf("%d writes through replica 0: %d of %d first reads through the others right after were stale; the new body came at most %v after the write",
		rounds, staleAtOnce, rounds*len(others), longest)
	// The write returns once the message is on every replica's socket
	// (Tiered.Invalidate); a replica starved of CPU may still read before
	// it has applied it. Without that wait, 1–3 of 20 reads were stale
	// for up to ~40ms (the cluster bus). Allow one, briefly.
	if staleAtOnce > 1 || longest > stalenessAllowed {
		t.Errorf("%d of %d reads right after a write were stale, the last for %v; want at most 1, for at most %v",
			staleAtOnce, rounds*len(others), longest, stalenessAllowed)
	}
	if tierHits < rounds*float64(len(others)) {
		t.Errorf("tier hits on replicas 1 and 2: got %v, want at least %d: the tiers were not warm before each write", tierHits, rounds*len(others))
	}
}

// TestFleetPurgeAllReachesEveryMaster: DELETE /admin/cache through one
// replica leaves no entry on any master of the cluster, and every
// replica's next read of a user it had cached goes upstream.
func TestFleetPurgeAllReachesEveryMaster(t *testing.T) {
	cluster := sharedCluster.Get(t)
	up := newFleetUpstream(t, 0)
	f := startFleet(t, cluster.URL(), up.URL)
	ids := fleetIDs(4001, 30)
	for _, id := range ids {
		for _, s := range f.replicas {
			for range 2 { // the second read is answered by the tier
				if r := f.mustUser(t, s, id); r.status != http.StatusOK {
					t.Fatalf("warming user %s: got %d", id, r.status)
				}
			}
		}
	}
	masters := cluster.Masters()
	if len(masters) != 3 {
		t.Fatalf("got %d masters, want 3", len(masters))
	}
	for _, m := range masters {
		if n := len(entryIDs(t, m)); n == 0 {
			t.Fatalf("master %s holds no entry before the purge: the test would prove nothing", m.Addr())
		} else {
			t.Logf("master %s: %d entries before the purge", m.Addr(), n)
		}
	}

	received := make([]float64, len(f.replicas))
	for i, s := range f.replicas {
		received[i] = metricValue(t, f.client, s, "userproxy_l1_invalidations_received_total")
	}
	req, _ := http.NewRequest(http.MethodDelete, f.replicas[0].admin+"/admin/cache", nil)
	req.Header.Set("Authorization", "Bearer "+fleetAdminToken)
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /admin/cache: got %d %s, want 200", resp.StatusCode, answer)
	}

	for _, m := range masters {
		if left := entryIDs(t, m); len(left) > 0 {
			t.Errorf("master %s: entries of users %v remain after the purge", m.Addr(), left)
		}
	}
	for i, s := range f.replicas {
		// The purge reaches the tiers by the "all" message, published
		// before and after the pass over the masters. Delivery across the
		// cluster bus can lag (see the write test), and that lag is not
		// this test's subject: let the messages arrive first.
		testkit.Await(t, fmt.Sprintf("replica %d to hear the purge", i), func() bool {
			return metricValue(t, f.client, s, "userproxy_l1_invalidations_received_total") >= received[i]+2
		})
		id := ids[i]
		before := up.RequestsFor(id)
		r := f.mustUser(t, s, id)
		if r.hit() || r.status != http.StatusOK || up.RequestsFor(id) != before+1 {
			t.Errorf("replica %d, user %s after the purge: got %d %q and %d upstream calls, want a 200 from one upstream call",
				i, id, r.status, r.cacheStatus, up.RequestsFor(id)-before)
		}
	}
}
