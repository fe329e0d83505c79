package cache

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

// The failover tests drive a store through a topology change on a real
// Cluster or Sentinel set and log the timeline: the event (a kill, a planned
// failover, a slot migration), the promotion as the promoted node reports
// it, and when hits on the keys the change moved came back. Figures are
// logged, not asserted: the assertion is that hits come back within
// recoveryDeadline and no read ever returns another key's data.

// clusterTraffic is traffic on a fresh cluster: 200 users with one scope
// each, plus extra, all filled and replicated. The affected keys are those
// on the master that holds the first user's slot, which it returns too.
func clusterTraffic(t *testing.T, c *redistest.Cluster, reloads *reloadCounter, extra []Key) (*traffic, *redis.ClusterClient, string) {
	t.Helper()
	client := failoverClient(t, c.URL(), reloads)
	cc := client.(*redis.ClusterClient)
	tr := &traffic{store: nil, affected: map[Key]bool{}}
	tr.store = NewRedis(client, tr.storeOptions())
	for i := range 200 {
		tr.keys = append(tr.keys, Key{ID: strconv.Itoa(i), Scope: "s"})
	}
	tr.keys = append(tr.keys, extra...)
	victim, _ := slotOwner(t, cc, tr.store.entryKey(tr.keys[0]))
	for _, k := range tr.keys {
		if owner, _ := slotOwner(t, cc, tr.store.entryKey(k)); owner == victim {
			tr.affected[k] = true
		}
	}
	tr.fillAll(t, client)
	return tr, cc, victim
}

// TestFailoverClusterMasterKilled: a master is SIGKILLed under load; its
// replica is promoted once cluster-node-timeout (1s) has passed, and the
// store must find it.
func TestFailoverClusterMasterKilled(t *testing.T) {
	c := redistest.StartCluster(t)
	var reloads reloadCounter
	tr, _, victim := clusterTraffic(t, c, &reloads, nil)
	replica := nodeClient(t, replicaOf(t, victim))
	tr.run(t, 4)
	tr.warm(t)
	var killed *redistest.Server
	for _, n := range c.Nodes() {
		if n.Addr() == victim {
			killed = n
		}
	}
	tr.begin()
	c.Kill(killed)
	promoted := watch(t, func(ctx context.Context) bool { return isMaster(ctx, replica) })
	defer func() { tr.report(t, "cluster master SIGKILLed", promoted(), &reloads) }()
	tr.waitRecovered(t)
	reloads.want(t, ReloadError)
}

// TestFailoverClusterManual: a planned CLUSTER FAILOVER, sent to a replica.
// The old master becomes a replica and answers MOVED.
func TestFailoverClusterManual(t *testing.T) {
	c := redistest.StartCluster(t)
	var reloads reloadCounter
	tr, _, victim := clusterTraffic(t, c, &reloads, nil)
	replica := nodeClient(t, replicaOf(t, victim))
	tr.run(t, 4)
	tr.warm(t)
	tr.begin()
	if err := replica.ClusterFailover(context.Background()).Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER: %v", err)
	}
	promoted := watch(t, func(ctx context.Context) bool { return isMaster(ctx, replica) })
	defer func() { tr.report(t, "CLUSTER FAILOVER", promoted(), &reloads) }()
	tr.waitRecovered(t)
	reloads.want(t, ReloadMoved)
}

// TestFailoverClusterSlotMigration: one slot holding a user with many
// scopes moves from its master to another under load (IMPORTING and
// MIGRATING, MIGRATE in small batches, SETSLOT NODE), so reads meet ASK and
// TRYAGAIN redirections, then MOVED.
func TestFailoverClusterSlotMigration(t *testing.T) {
	c := redistest.StartCluster(t)
	var reloads reloadCounter
	var hot []Key // one user, 50 scopes: 51 keys in one slot
	for i := range 50 {
		hot = append(hot, Key{ID: "hot", Scope: "s" + strconv.Itoa(i)})
	}
	tr, cc, _ := clusterTraffic(t, c, &reloads, hot)
	from, slot := slotOwner(t, cc, tr.store.genKey("hot"))
	tr.affected = map[Key]bool{}
	for _, k := range hot {
		tr.affected[k] = true
	}
	nodes := clusterNodes(t, from)
	var to string
	for _, m := range c.Masters() {
		if m.Addr() != from {
			to = m.Addr()
			break
		}
	}
	src, dst := nodeClient(t, from), nodeClient(t, to)
	ctx := context.Background()
	do := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", args, c.Options().Addr, err)
		}
	}
	tr.run(t, 4)
	tr.warm(t)
	tr.begin()
	do(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", nodes[from].id)
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", nodes[to].id)
	host, port, _ := strings.Cut(to, ":")
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 5).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(src, args...)
		time.Sleep(20 * time.Millisecond) // let traffic meet the half-moved slot
	}
	for _, m := range c.Masters() {
		do(nodeClient(t, m.Addr()), "CLUSTER", "SETSLOT", slot, "NODE", nodes[to].id)
	}
	moved := time.Now()
	func() {
		defer tr.report(t, "slot migration (\"promoted\" = SETSLOT NODE done)", moved, &reloads)
		tr.waitRecovered(t)
	}()
	// go-redis follows a MOVED and reloads by itself; which reason our
	// hook reports first depends on timing: a TRYAGAIN during the move
	// (error) may reload the map before any read meets a MOVED.
	if reloads.count(ReloadMoved)+reloads.count(ReloadError) == 0 {
		t.Errorf("no topology reload reported for the moved slot; got %v", &reloads)
	}
	for _, k := range hot {
		if n, err := dst.Exists(ctx, tr.store.entryKey(k)).Result(); err != nil || n != 1 {
			t.Errorf("%v is not on the new owner (n=%d, err=%v)", k, n, err)
		}
	}
}

// TestFailoverSentinelMasterKilled: the master of a Sentinel set is
// SIGKILLed under load; the Sentinels promote the replica.
func TestFailoverSentinelMasterKilled(t *testing.T) {
	st := redistest.StartSentinel(t)
	var reloads reloadCounter
	client := failoverClient(t, st.URL(), &reloads)
	tr := &traffic{store: nil, affected: map[Key]bool{}}
	tr.store = NewRedis(client, tr.storeOptions())
	for i := range 200 {
		k := Key{ID: strconv.Itoa(i), Scope: "s"}
		tr.keys = append(tr.keys, k)
		tr.affected[k] = true
	}
	tr.fillAll(t, client)
	replica := nodeClient(t, st.Replica().Addr())
	sentinel := nodeClient(t, st.Sentinels()[0].Addr())
	tr.run(t, 4)
	tr.warm(t)
	tr.begin()
	st.KillMaster()
	promoted := watch(t, func(ctx context.Context) bool { return isMaster(ctx, replica) })
	switched := watch(t, func(ctx context.Context) bool {
		addr, err := sentinel.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", st.MasterName()).StringSlice()
		return err == nil && len(addr) == 2 && addr[1] == strings.TrimPrefix(st.Replica().Addr(), "127.0.0.1:")
	})
	defer func() {
		tr.report(t, "sentinel master SIGKILLed", promoted(), &reloads)
		if at := switched(); !at.IsZero() {
			t.Logf("  a sentinel named the new master at +%v", at.Sub(tr.start).Round(time.Millisecond))
		}
	}()
	tr.waitRecovered(t)
	reloads.want(t, ReloadSwitch)
}

// TestFailoverTierFeedSurvives: the in-process tier's invalidation feed
// resubscribes after its node dies, and an invalidation published through
// one replica's tier reaches another's afterwards.
func TestFailoverTierFeedSurvives(t *testing.T) {
	for _, kind := range []string{"cluster", "sentinel"} {
		t.Run(kind, func(t *testing.T) {
			var reloads reloadCounter
			var rawURL string
			var kill func()
			var promotedNode string
			var pick func(a *Tiered) string // a user whose slot the kill moves
			switch kind {
			case "cluster":
				c := redistest.StartCluster(t)
				rawURL = c.URL()
				pick = func(a *Tiered) string {
					cc := a.l2.client.(*redis.ClusterClient)
					// Kill the master the feed is subscribed on.
					victim, _ := slotOwner(t, cc, a.channel)
					promotedNode = replicaOf(t, victim)
					kill = func() {
						for _, n := range c.Nodes() {
							if n.Addr() == victim {
								c.Kill(n)
							}
						}
					}
					for i := 0; ; i++ {
						if owner, _ := slotOwner(t, cc, a.l2.genKey(strconv.Itoa(i))); owner == victim {
							return strconv.Itoa(i)
						}
					}
				}
			case "sentinel":
				st := redistest.StartSentinel(t)
				rawURL = st.URL()
				promotedNode = st.Replica().Addr()
				kill = st.KillMaster
				pick = func(*Tiered) string { return "1" }
			}
			clock := newTClock()
			a := newTieredOn(t, failoverClient(t, rawURL, &reloads), "", clock, time.Hour)
			b := newTieredOn(t, failoverClient(t, rawURL, &reloads), "", clock, time.Hour)
			run(t, a)
			run(t, b)
			id := pick(a)
			k := Key{ID: id, Scope: "s"}
			replica := nodeClient(t, promotedNode)
			ctx := context.Background()

			start := time.Now()
			kill()
			promoted := watch(t, func(ctx context.Context) bool { return isMaster(ctx, replica) })
			testkit.WaitFor(t, recoveryDeadline, "both tiers to resubscribe", func() bool {
				return a.Stats().Subscribes >= 2 && b.Stats().Subscribes >= 2
			})
			resubscribed := time.Now()
			// Fill through a, read through b, as the test without a
			// failover does; the store may still be failing at first.
			testkit.WaitFor(t, recoveryDeadline, "a fill through a", func() bool {
				cctx, cancel := context.WithTimeout(ctx, opTimeout)
				defer cancel()
				_, gen, _, err := a.Get(cctx, k)
				if err == nil {
					err = a.Set(cctx, k, Entry{Status: 200, Body: []byte("v"), Expires: clock.Now().Add(time.Hour)}, time.Hour, gen)
				}
				return err == nil
			})
			if _, _, ok, err := b.Get(ctx, k); !ok || err != nil {
				t.Fatalf("b: Get after the fill: ok=%v err=%v", ok, err)
			}
			waitLocal(t, a, k, true, "a to hold the user in its tier")
			if err := b.Invalidate(ctx, id); err != nil {
				t.Fatalf("b: Invalidate: %v", err)
			}
			waitLocal(t, a, k, false, "a to drop the user b invalidated")
			at := promoted()
			t.Logf("%s: killed the feed's node; promoted +%v, both tiers resubscribed +%v, invalidation delivered +%v; reloads: %v",
				kind, at.Sub(start).Round(time.Millisecond), resubscribed.Sub(start).Round(time.Millisecond),
				time.Since(start).Round(time.Millisecond), &reloads)
		})
	}
}
