package cache

// What the failover tests (failover_test.go) share: traffic that records
// what its callers see, and probes of the nodes.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/testkit"
)

// recoveryDeadline bounds "the store works again" after a topology change.
// It is a functional bound, far above the few seconds expected, and far
// below the 60s periodic reload go-redis would otherwise wait for.
const recoveryDeadline = 15 * time.Second

// steadyFor is how long reads of the affected keys must run without an
// error, with hits, before the store counts as recovered.
const steadyFor = time.Second

// reloadCounter counts ClientOptions.OnTopologyReload calls by reason.
type reloadCounter struct {
	mu   sync.Mutex // protects n and last
	n    map[string]int
	last time.Time // of the last call
}

func (c *reloadCounter) add(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason]++
	c.last = time.Now()
}

func (c *reloadCounter) count(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

// want fails t unless reason was reported.
func (c *reloadCounter) want(t *testing.T, reason string) {
	t.Helper()
	if c.count(reason) == 0 {
		t.Errorf("no topology reload reported for %q; got %v", reason, c)
	}
}

func (c *reloadCounter) lastAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *reloadCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(c.n)) {
		parts = append(parts, fmt.Sprintf("%s=%d", r, c.n[r]))
	}
	if parts == nil {
		return "none"
	}
	return strings.Join(parts, " ")
}

// opTimeout bounds each operation of the traffic, and each read and write
// on a connection: above the proxy's default (50ms) so that a loaded test
// machine does not fail reads of live nodes, well under a second so that a
// dead node fails them quickly.
const opTimeout = 250 * time.Millisecond

// failoverClient is a client on rawURL built as the proxy builds it, with
// its topology reloads counted.
func failoverClient(t *testing.T, rawURL string, reloads *reloadCounter) redis.UniversalClient {
	t.Helper()
	client, err := NewUniversalClient(rawURL, ClientOptions{Timeout: opTimeout, OnTopologyReload: reloads.add})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// traffic reads keys through a store, filling misses as the proxy does,
// and records what its callers saw once start has been called.
type traffic struct {
	store    *Redis
	keys     []Key
	affected map[Key]bool // the keys the topology change moves

	mu        sync.Mutex // protects the fields below
	start     time.Time  // the event; zero before it
	firstHit  time.Time  // first hit on an affected key after start
	steadyHit time.Time  // first affected hit since the last affected error
	hits      int        // hits on affected keys since start
	affErrs   int        // errors on affected keys since start
	otherErrs int        // errors on the other keys since start
	wrong     int        // hits whose body is not their key's, ever
	ops       int        // operations recorded, ever
	errSample []string   // the first few distinct errors
	breaker   []string   // the store breaker's transitions since start
}

// storeOptions are the store's options, with its breaker's transitions
// recorded in tr.
func (tr *traffic) storeOptions() RedisOptions {
	return RedisOptions{AutoPipeline: true, Breaker: BreakerOptions{OnStateChange: func(_, to BreakerState) {
		// Not tr.mu: OnStateChange runs under the breaker's lock, and
		// record, under tr.mu, never calls into the breaker, but keep
		// the order one way regardless.
		go tr.breakerChanged(to, time.Now())
	}}}
}

func (tr *traffic) breakerChanged(to BreakerState, at time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.start.IsZero() {
		tr.breaker = append(tr.breaker, fmt.Sprintf("%v@+%v", to, at.Sub(tr.start).Round(time.Millisecond)))
	}
}

func bodyOf(k Key) string { return "user " + k.ID + " scope " + k.Scope }

// fillAll stores every key once and waits until each master's replicas
// hold the writes, so that a promoted replica has them.
func (tr *traffic) fillAll(t *testing.T, client redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	for _, k := range tr.keys {
		if err := tr.store.Set(ctx, k, Entry{Status: 200, Body: []byte(bodyOf(k))}, time.Hour, 0); err != nil {
			t.Fatalf("filling %v: %v", k, err)
		}
	}
	wait := func(ctx context.Context, c *redis.Client) error {
		// WAIT in steps shorter than the client's read timeout (opTimeout):
		// on a loaded machine replication may take longer than that.
		deadline := time.Now().Add(testkit.DefaultWait)
		for {
			n, err := c.Do(ctx, "WAIT", 1, (opTimeout / 2).Milliseconds()).Int()
			switch {
			case err == nil && n >= 1:
				return nil
			case time.Now().After(deadline):
				return fmt.Errorf("no replica acknowledged within %v (last: %d, %v)", testkit.DefaultWait, n, err)
			}
		}
	}
	var err error
	switch c := client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, wait)
	case *redis.Client:
		err = wait(ctx, c)
	}
	if err != nil {
		t.Fatalf("WAIT for the replicas: %v", err)
	}
}

// run starts workers that go over the keys until the test ends, each
// operation bounded as the proxy bounds a cache call.
func (tr *traffic) run(t *testing.T, workers int) {
	for w := range workers {
		testkit.Go(t, func(ctx context.Context) {
			for i := w; ctx.Err() == nil; i += workers {
				tr.op(ctx, tr.keys[i%len(tr.keys)])
				time.Sleep(2 * time.Millisecond) // a steady load, not a benchmark
			}
		})
	}
}

func (tr *traffic) op(ctx context.Context, k Key) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e, gen, ok, err := tr.store.Get(octx, k)
	if err == nil && !ok {
		err = tr.store.Set(octx, k, Entry{Status: 200, Body: []byte(bodyOf(k))}, time.Hour, gen)
		if errors.Is(err, ErrGenerationChanged) {
			err = nil
		}
	}
	if ctx.Err() != nil {
		return // the test is over
	}
	tr.record(k, e, ok && err == nil, err)
}

func (tr *traffic) record(k Key, e Entry, hit bool, err error) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.ops++
	if hit && string(e.Body) != bodyOf(k) {
		tr.wrong++
	}
	if tr.start.IsZero() {
		return
	}
	aff := tr.affected[k]
	switch {
	case err != nil:
		if aff {
			tr.affErrs++
			tr.steadyHit = time.Time{}
		} else {
			tr.otherErrs++
		}
		if msg := err.Error(); len(tr.errSample) < 5 && !slices.Contains(tr.errSample, msg) {
			tr.errSample = append(tr.errSample, msg)
		}
	case hit && aff:
		tr.hits++
		if tr.firstHit.IsZero() {
			tr.firstHit = now
		}
		if tr.steadyHit.IsZero() {
			tr.steadyHit = now
		}
	}
}

// begin marks the event: what callers see is counted from now on.
func (tr *traffic) begin() time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.start = time.Now()
	return tr.start
}

// waitRecovered waits until reads of the affected keys have hit without an
// error for steadyFor, and fails t after recoveryDeadline from the event.
func (tr *traffic) waitRecovered(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	deadline := tr.start.Add(recoveryDeadline)
	tr.mu.Unlock()
	testkit.WaitFor(t, time.Until(deadline), "hits on the affected keys to come back", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return !tr.steadyHit.IsZero() && time.Since(tr.steadyHit) >= steadyFor
	})
}

// report logs the timeline; promoted is when the change took effect
// (zero if it was never seen).
func (tr *traffic) report(t *testing.T, what string, promoted time.Time, reloads *reloadCounter) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return "+" + at.Sub(tr.start).Round(time.Millisecond).String()
	}
	afterPromotion := "?"
	if !promoted.IsZero() && !tr.steadyHit.IsZero() {
		afterPromotion = tr.steadyHit.Sub(promoted).Round(time.Millisecond).String()
	}
	t.Logf("%s: promoted %s, first hit %s, hits steady %s (%s after the promotion); "+
		"caller errors: %d on the %d affected keys, %d on the other %d; hits on affected keys: %d; reloads: %v (last %s)",
		what, since(promoted), since(tr.firstHit), since(tr.steadyHit), afterPromotion,
		tr.affErrs, len(tr.affected), tr.otherErrs, len(tr.keys)-len(tr.affected), tr.hits, reloads, since(reloads.lastAt()))
	if len(tr.breaker) > 0 {
		t.Logf("  store breaker: %s", strings.Join(tr.breaker, " "))
	}
	for _, e := range tr.errSample {
		t.Logf("  error seen: %s", e)
	}
	if tr.wrong > 0 {
		t.Errorf("%d hits returned another key's body", tr.wrong)
	}
}

// watch polls cond every 10ms from now on and returns a function that
// reports when cond first held (zero if not yet).
func watch(t *testing.T, cond func(ctx context.Context) bool) func() time.Time {
	var mu sync.Mutex // protects at
	var at time.Time
	testkit.Go(t, func(ctx context.Context) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if cond(ctx) {
				mu.Lock()
				at = time.Now()
				mu.Unlock()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// nodeClient is a plain client on one node, for the tests' own probes.
func nodeClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// isMaster reports whether the node says it is a master.
func isMaster(ctx context.Context, c *redis.Client) bool {
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "role:master")
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct{ id, addr, master string }

// clusterNodes returns the cluster's nodes by address, as the node at addr
// sees them.
func clusterNodes(t *testing.T, addr string) map[string]clusterNode {
	t.Helper()
	out, err := nodeClient(t, addr).ClusterNodes(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	nodes := map[string]clusterNode{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@")
		nodes[a] = clusterNode{id: f[0], addr: a, master: f[3]}
	}
	return nodes
}

// replicaOf returns the address of master's replica.
func replicaOf(t *testing.T, master string) string {
	t.Helper()
	nodes := clusterNodes(t, master)
	for _, n := range nodes {
		if n.master == nodes[master].id {
			return n.addr
		}
	}
	t.Fatalf("no replica of %s", master)
	return ""
}

// slotOwner returns the address of the master that holds key's slot, and
// the slot.
func slotOwner(t *testing.T, c *redis.ClusterClient, key string) (string, int) {
	t.Helper()
	ctx := context.Background()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range sh.Nodes {
					if n.Role == "master" {
						return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)), int(slot)
					}
				}
			}
		}
	}
	t.Fatalf("no master holds slot %d", slot)
	return "", 0
}

// warm waits until the traffic has made a few hundred operations, so that
// every node's pool holds connections, as a running proxy's does.
func (tr *traffic) warm(t *testing.T) {
	t.Helper()
	testkit.Await(t, "the traffic to warm the pools", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.ops >= 400
	})
}
