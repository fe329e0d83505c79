package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// hitsBackDeadline bounds the wait for hits on a dead master's users to
// come back: far above the goal (5 s after the kill), so that it
// separates "recovers" from "does not" rather than timing it. The figures
// are logged.
const hitsBackDeadline = 20 * time.Second

// load reads a hot set of users through every replica of a fleet, over and
// over, and keeps what the fault tests look at: every answer that was not
// the user's current body, and when hits on the watched users came back
// after the fault.
type load struct {
	mu       sync.Mutex // protects the fields below
	bad      []string
	watched  map[string]bool // users whose hits are timed
	fault    time.Time       // zero until markFault
	missed   int             // misses on watched users begun after the fault
	hitsBack map[string]time.Time
}

// readers is how many goroutines read through each replica.
const readers = 2

// startLoad starts reading ids through every replica of f until the test
// ends. Each reader paces itself (a request every 5 ms at most), so the
// load is steady rather than all the CPU the machine has.
func startLoad(t *testing.T, f *fleet, up *upstreamtest.Server, ids []string) *load {
	l := &load{watched: map[string]bool{}, hitsBack: map[string]time.Time{}}
	bodies := map[string]string{}
	for _, id := range ids {
		bodies[id] = want(t, up, id)
	}
	for i, s := range f.replicas {
		for j := range readers {
			testkit.Go(t, func(ctx context.Context) {
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for n := j; ; n++ {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					id := ids[n%len(ids)]
					begin := time.Now()
					r, err := f.user(s, id)
					if ctx.Err() != nil {
						return // the test is over; the answer may be cut short
					}
					l.record(i, id, begin, r, err, bodies[id])
				}
			})
		}
	}
	return l
}

func (l *load) record(replica int, id string, begin time.Time, r reply, err error, body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.bad = append(l.bad, fmt.Sprintf("replica %d, user %s: %v", replica, id, err))
	case r.status != http.StatusOK || r.body != body:
		l.bad = append(l.bad, fmt.Sprintf("replica %d, user %s: got %d %.60q (%s)", replica, id, r.status, r.body, r.cacheStatus))
	}
	if !l.watched[id] || l.fault.IsZero() || begin.Before(l.fault) {
		return
	}
	if !r.hit() {
		l.missed++
	} else if _, ok := l.hitsBack[id]; !ok {
		l.hitsBack[id] = time.Now()
	}
}

// watch makes ids the users whose hits markFault times.
func (l *load) watch(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.watched[id] = true
	}
}

// markFault records that the fault has happened: from now on, a watched
// user's first hit in a request begun after it counts as its hits coming
// back.
func (l *load) markFault() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fault = time.Now()
	return l.fault
}

// back returns how many watched users have had a hit since the fault, the
// first and the last of those times, and the misses counted since the fault.
func (l *load) back() (n int, first, last time.Time, missed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.hitsBack {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return len(l.hitsBack), first, last, l.missed
}

func (l *load) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bad)
}

// check waits, up to hitsBackDeadline, for hits on every watched user to
// come back, logs the timeline kill → promotion → hits back, and checks
// that they came back and that no client saw an error.
func (l *load) check(t *testing.T, what string, killed time.Time, promoted func() time.Time, watched int) {
	t.Helper()
	// Not testkit.WaitFor: the timeline is logged whether or not the hits
	// came back.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n, first, last, missed := l.back()
	for ; n < watched && time.Since(killed) < hitsBackDeadline; n, first, last, missed = l.back() {
		<-tick.C
	}
	since := func(at time.Time) string {
		if at.IsZero() {
			return "not seen"
		}
		return at.Sub(killed).Round(time.Millisecond).String()
	}
	if n < watched {
		last = time.Time{}
	}
	t.Logf("%s: kill → promotion %s, → first hit back %s, → hits back on all %d users %s (goal ≤ 5s); %d misses on them meanwhile",
		what, since(promoted()), since(first), watched, since(last), missed)
	if n < watched {
		t.Errorf("hits came back on %d of the dead master's %d users within %v of the kill, want all", n, watched, hitsBackDeadline)
	}
	if bad := l.errors(); len(bad) > 0 {
		t.Errorf("%d client errors under load, want 0; the first: %v", len(bad), bad[:min(5, len(bad))])
	}
}

// TestFleetMasterKilledUnderLoad: a master of the cluster is SIGKILLed
// while clients read a hot set through all three replicas. No client sees
// an error (the proxy fails open to the upstream), and hits on the dead
// master's users come back once its replica is promoted.
//
// The in-process tier is off: a tier hit never reads Redis, so it would
// hide the dead master's slots, and the hits timed here are Redis hits.
func TestFleetMasterKilledUnderLoad(t *testing.T) {
	cluster := redistest.StartCluster(t)
	up := newFleetUpstream(t, 0)
	f := startFleet(t, cluster.URL(), up.URL, "-l1-ttl", "0")
	ids := fleetIDs(1, 30)
	for _, id := range ids {
		if r := f.mustUser(t, f.replicas[0], id); r.status != http.StatusOK {
			t.Fatalf("warming user %s: got %d", id, r.status)
		}
	}
	victim := cluster.Masters()[0]
	onVictim := entryIDs(t, victim)
	if len(onVictim) == 0 {
		t.Fatalf("master %s holds none of the hot users", victim.Addr())
	}
	l := startLoad(t, f, up, ids)
	l.watch(onVictim)
	testkit.Await(t, "hits through every replica", func() bool {
		for _, s := range f.replicas {
			if metricValue(t, f.client, s, `userproxy_requests_total{cache="hit",code="200"}`) == 0 {
				return false
			}
		}
		return true
	})

	cluster.Kill(victim)
	killed := l.markFault()
	var promoted promotionWatch
	testkit.Go(t, func(ctx context.Context) {
		promoted.poll(ctx, func() bool {
			m := cluster.Masters()
			return len(m) == 3 && !slices.Contains(m, victim)
		})
	})
	l.check(t, fmt.Sprintf("master %s (%d of %d hot users)", victim.Addr(), len(onVictim), len(ids)), killed, promoted.at, len(onVictim))
}

// TestFleetSentinelMasterKilledUnderLoad: as TestFleetMasterKilledUnderLoad,
// on a Sentinel setup: the master, which holds every user, is SIGKILLed;
// no client sees an error and hits come back once the Sentinels have
// promoted the replica.
func TestFleetSentinelMasterKilledUnderLoad(t *testing.T) {
	st := redistest.StartSentinel(t)
	up := newFleetUpstream(t, 0)
	f := startFleet(t, st.URL(), up.URL, "-l1-ttl", "0")
	ids := fleetIDs(1, 30)
	for _, id := range ids {
		if r := f.mustUser(t, f.replicas[0], id); r.status != http.StatusOK {
			t.Fatalf("warming user %s: got %d", id, r.status)
		}
	}
	// The replica must hold the entries when the master dies, or there is
	// nothing to hit after the failover.
	testkit.Await(t, "the replica to hold every entry", func() bool {
		return len(entryIDs(t, st.Replica())) == len(ids)
	})
	l := startLoad(t, f, up, ids)
	l.watch(ids)
	testkit.Await(t, "hits through every replica", func() bool {
		for _, s := range f.replicas {
			if metricValue(t, f.client, s, `userproxy_requests_total{cache="hit",code="200"}`) == 0 {
				return false
			}
		}
		return true
	})

	st.KillMaster()
	killed := l.markFault()
	var promoted promotionWatch
	replica := redis.NewClient(&redis.Options{Addr: st.Replica().Addr()})
	t.Cleanup(func() { replica.Close() })
	testkit.Go(t, func(ctx context.Context) {
		promoted.poll(ctx, func() bool {
			info, err := replica.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(info, "role:master")
		})
	})
	l.check(t, "sentinel master", killed, promoted.at, len(ids))
}

// promotionWatch records when a replica was first seen promoted.
type promotionWatch struct {
	mu   sync.Mutex // protects seen
	seen time.Time
}

// poll checks promoted every 20 ms until it holds or ctx is done.
func (p *promotionWatch) poll(ctx context.Context, promoted func() bool) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !promoted() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	p.mu.Lock()
	p.seen = time.Now()
	p.mu.Unlock()
}

func (p *promotionWatch) at() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}
