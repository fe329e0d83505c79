package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
)

// L1Options configures a Tiered store's in-process tier. Zero values are
// documented defaults.
type L1Options struct {
	// MaxBytes bounds the tier, counted like Memory counts items. Zero
	// means 32 MiB: the hot set of a frontend's users, not the whole cache.
	MaxBytes int64
	// TTL is the longest the tier may answer without a confirmed-current
	// invalidation feed: it answers only while a heartbeat sent on the
	// subscription less than TTL ago has come back (see Run). So it is the
	// longest a replica can serve data that missed an invalidation. Items
	// themselves live until their fresh expiry. Zero means 1s.
	TTL time.Duration
	// Channel is the Redis pub/sub channel invalidations are published on.
	// Zero means "<prefix>:invalidations" of the Redis store.
	Channel string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// maxItemLife caps how long an item stays in the tier, whatever its
// Entry.Expires says. Invalidation records must be kept as long as the
// longest-lived item (see dropLocal), so the cap bounds that memory; it also
// bounds the harm of an Expires written by a replica whose clock runs far
// ahead. Ten minutes is well above the usual -cache-ttl (1m): a longer
// entry costs one Redis read per ten minutes.
const maxItemLife = 10 * time.Minute

// minHeartbeat is the shortest interval between heartbeats, whatever the
// TTL: a ping every few milliseconds would cost Redis more than it saves.
const minHeartbeat = 5 * time.Millisecond

// receiveRetry is the pause between failed receives on the subscription, so
// that an unreachable Redis is not dialled in a tight loop.
const receiveRetry = 100 * time.Millisecond

// recordSlack bounds a Redis read that feeds the tier: an item whose read
// (clock read to insert) took longer is not inserted. It keeps the
// invalidation records' retention exact instead of assumed (see dropLocal).
// Reads are bounded by the cache budget (milliseconds), far below this.
const recordSlack = 10 * time.Second

// Tiered is a Redis store with a small in-process tier (L1) in front of it,
// with W-TinyLFU admission (otter) so a scan of cold users cannot flush the
// hot set. Scope isolation holds as in Redis: L1 is keyed by the same Key.
//
// It is correct across replicas. Every invalidation bumps the generation in
// Redis and publishes on the channel in one script, and every replica's Run
// applies what it hears. Run also sends a heartbeat (PING) on the
// subscription every TTL/4; its pong, which Redis delivers in order with the
// messages, proves that every invalidation before the ping was applied here.
// The tier answers only until TTL after the sending of the ping whose pong
// came last (its lease), so it never serves data that missed an
// invalidation for longer than TTL, even if messages are lost; and an item
// may then live until its fresh expiry (at most maxItemLife).
//
// Without Run there is never a lease and the tier answers nothing: every
// read goes to Redis.
type Tiered struct {
	l2      *Redis
	l1      *otter.Cache[Key, *l1Item]
	counter *stats.Counter
	ttl     time.Duration
	channel string
	now     func() time.Time

	// leaseFrom is the send time (Unix ns) of the heartbeat whose pong came
	// back last; 0 while there is no lease (before the first pong, after a
	// receive error or a resubscription, after Run returned).
	leaseFrom atomic.Int64

	// seq numbers invalidations. An L1 item remembers seq as it was before
	// the Redis read that produced it; the item is dead if its user (or
	// everybody: floor) was invalidated later.
	seq     atomic.Uint64
	floor   atomic.Uint64
	longest atomic.Int64 // longest item lifetime inserted so far, ns
	nInval  atomic.Int64 // len(records), read on the hit path to skip inval
	inval   sync.Map     // user id → seq (uint64) of its latest invalidation
	// mu protects records and orders writes to inval (held by dropLocal
	// and dropAllLocal); insert holds it shared, see there.
	mu      sync.RWMutex
	records []invalRecord

	// echoes are the writes waiting to hear their own message come back
	// (awaitEcho), by payload.
	echoMu sync.Mutex
	echoes map[string][]chan struct{}

	received    atomic.Uint64 // invalidation messages applied from other replicas
	subscribes  atomic.Uint64 // subscriptions established and confirmed by a pong
	hits        atomic.Uint64
	misses      atomic.Uint64
	leaseMisses atomic.Uint64
}

type l1Item struct {
	e       Entry
	gen     uint64
	seq     uint64
	expires int64         // Unix ns: e.Expires, capped by maxItemLife
	life    time.Duration // expires minus the insertion time, for otter
}

// invalRecord is one dropLocal, kept in order for pruning.
type invalRecord struct {
	id  string
	seq uint64
	at  time.Time
}

// L1Stats is a snapshot of the in-process tier, for metrics.
type L1Stats struct {
	Hits, Misses, Evictions, InvalidationsReceived uint64
	Subscribes                                     uint64 // (re)subscriptions confirmed by a heartbeat, each of which flushed the tier
	// LeaseMisses counts the Misses that found a fresh item the tier could
	// not serve because it held no lease.
	LeaseMisses uint64
	// LeaseValid is whether the tier holds a lease now: a heartbeat sent
	// less than TTL ago has come back, so the tier answers.
	LeaseValid bool
	Bytes      uint64
	Entries    int
}

// NewTiered returns l2 fronted by an in-process tier.
func NewTiered(l2 *Redis, opts L1Options) (*Tiered, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 32 << 20
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Second
	}
	if opts.Channel == "" {
		opts.Channel = l2.prefix + ":invalidations"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Tiered{l2: l2, ttl: opts.TTL, channel: opts.Channel, now: opts.Now, counter: stats.NewCounter()}
	var err error
	t.l1, err = otter.New(&otter.Options[Key, *l1Item]{
		MaximumWeight: uint64(opts.MaxBytes),
		Weigher: func(k Key, it *l1Item) uint32 {
			return uint32(min(len(it.e.Body)+len(it.e.Header)+len(it.e.ContentType)+len(k.ID)+len(k.Scope)+itemOverhead, 1<<31))
		},
		// Frees an item's memory at its expiry; GetLocal checks the
		// expiry itself, to the nanosecond.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Key, *l1Item]) time.Duration { return e.Value.life }),
		StatsRecorder:    t.counter,
		Clock:            otterClock{opts.Now},
	})
	if err != nil {
		return nil, fmt.Errorf("building the in-process tier: %w", err)
	}
	return t, nil
}

// otterClock gives otter our clock and no ticker: expired items go when
// they are next looked at or evicted, and the cache starts no goroutine.
type otterClock struct{ now func() time.Time }

func (c otterClock) NowNano() int64                    { return c.now().UnixNano() }
func (otterClock) Tick(time.Duration) <-chan time.Time { return nil }

// lookup is the outcome of a tier lookup.
type lookup int

const (
	absent  lookup = iota // no live, fresh item
	noLease               // a live, fresh item, but no lease to serve it
	hit                   // a live, fresh item under a lease
)

// GetLocal answers from the in-process tier only, without I/O, and only
// under a lease (see Tiered). The returned Body and Header are shared with
// the tier: callers must not modify them. A miss here is not counted as a
// tier miss; Get counts it if it goes to Redis.
func (t *Tiered) GetLocal(k Key) (e Entry, gen uint64, ok bool) {
	it, res := t.local(k)
	if res != hit {
		return Entry{}, 0, false
	}
	t.hits.Add(1)
	return it.e, it.gen, true
}

func (t *Tiered) local(k Key) (*l1Item, lookup) {
	ent, ok := t.l1.GetEntry(k)
	if !ok {
		return nil, absent
	}
	// The clock read otter made for its own expiry check: one per lookup.
	now, it := ent.SnapshotAtNano, ent.Value
	if now >= it.expires || !t.alive(k.ID, it.seq) {
		return nil, absent
	}
	if !t.leased(now) {
		return nil, noLease
	}
	return it, hit
}

// alive reports whether an item read at seq has not been invalidated since.
func (t *Tiered) alive(id string, seq uint64) bool {
	if seq < t.floor.Load() {
		return false
	}
	if t.nInval.Load() == 0 {
		return true
	}
	r, ok := t.inval.Load(id)
	return !ok || seq >= r.(uint64)
}

// Get answers from the tier, or from Redis (and keeps a fresh answer in the
// tier). The returned Body and Header are shared with the tier: callers must
// not modify them.
func (t *Tiered) Get(ctx context.Context, k Key) (e Entry, gen uint64, ok bool, err error) {
	it, res := t.local(k)
	if res == hit {
		t.hits.Add(1)
		return it.e, it.gen, true, nil
	}
	t.misses.Add(1)
	if res == noLease {
		t.leaseMisses.Add(1)
	}
	start := t.now()
	seq := t.seq.Load()
	e, gen, ok, err = t.l2.Get(ctx, k)
	if err == nil && ok {
		t.insert(k, e, gen, seq, start, maxItemLife)
	}
	return e, gen, ok, err
}

// Set stores in Redis (see Redis.Set) and, once stored, in the tier. The
// tier keeps e.Body and e.Header as given, without a copy, and shares them
// with every later hit: the caller must not modify them after Set.
func (t *Tiered) Set(ctx context.Context, k Key, e Entry, ttl time.Duration, gen uint64) error {
	start := t.now()
	seq := t.seq.Load()
	if err := t.l2.Set(ctx, k, e, ttl, gen); err != nil {
		return err
	}
	if ttl > 0 {
		// Capacities cut: a hit's Header.Add must not write into spare
		// room of the caller's arrays, which every hit shares.
		e.Body = e.Body[:len(e.Body):len(e.Body)]
		e.Header = e.Header[:len(e.Header):len(e.Header)]
		t.insert(k, e, gen, seq, start, min(ttl, maxItemLife))
	}
	return nil
}

// insert puts what a Redis operation that began at start (with seq loaded
// after start) produced into the tier, to live until the entry's fresh
// expiry and at most limit. A stale entry is not inserted: Redis may hold a
// newer fill from another replica, and stale-while-revalidate must see it.
func (t *Tiered) insert(k Key, e Entry, gen, seq uint64, start time.Time, limit time.Duration) {
	// Shared with other inserts, exclusive of dropLocal: a record is never
	// pruned between the checks below and the item becoming visible.
	t.mu.RLock()
	defer t.mu.RUnlock()
	now := t.now()
	if now.Sub(start) > recordSlack || !t.alive(k.ID, seq) {
		return
	}
	life := min(e.Expires.Sub(now), limit)
	if life <= 0 {
		return
	}
	for cur := t.longest.Load(); int64(life) > cur && !t.longest.CompareAndSwap(cur, int64(life)); {
		cur = t.longest.Load()
	}
	t.l1.Set(k, &l1Item{e: e, gen: gen, seq: seq, expires: now.Add(life).UnixNano(), life: life})
}

// Invalidate drops every scope of user id in Redis, here, and — through the
// channel — in every replica's tier. The bump and the publish are one
// script, so a generation bumped in Redis has always been announced. The
// local tier is dropped even when Redis fails.
//
// It returns once this replica's subscription has received the message
// back, or after at most echoWait. Every replica subscribes to the channel
// on the same node (the channel's slot's master, under Cluster), which
// writes a message to all its subscribers at once: hearing it back means
// the others have it too. Under Cluster the message reaches that node over
// the cluster bus, which here took up to 40ms; without the wait, a read
// through another replica right after the write could be served the old
// entry from its tier for that long.
func (t *Tiered) Invalidate(ctx context.Context, id string) error {
	echo, forget := t.expectEcho("id:" + id)
	defer forget()
	err := t.l2.invalidateUser(ctx, id, t.channel)
	t.dropLocal(id)
	if err == nil {
		t.awaitEcho(ctx, echo)
	}
	return err
}

// echoWait bounds how long a write waits to hear its invalidation back:
// past it, the other replicas' tiers learn of it within their TTL, as
// when messages are lost.
const echoWait = 250 * time.Millisecond

// expectEcho registers for the next message with payload received on the
// subscription; call forget when done.
func (t *Tiered) expectEcho(payload string) (echo <-chan struct{}, forget func()) {
	ch := make(chan struct{})
	t.echoMu.Lock()
	if t.echoes == nil {
		t.echoes = map[string][]chan struct{}{}
	}
	t.echoes[payload] = append(t.echoes[payload], ch)
	t.echoMu.Unlock()
	return ch, func() {
		t.echoMu.Lock()
		defer t.echoMu.Unlock()
		ws := t.echoes[payload]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(t.echoes, payload)
		} else {
			t.echoes[payload] = ws
		}
	}
}

// echoed wakes the writers waiting for payload, after it was applied.
func (t *Tiered) echoed(payload string) {
	t.echoMu.Lock()
	defer t.echoMu.Unlock()
	for _, ch := range t.echoes[payload] {
		close(ch)
	}
	delete(t.echoes, payload)
}

// awaitEcho waits for echo, at most echoWait and never past ctx, and only
// while the subscription is confirmed (else no echo may come).
func (t *Tiered) awaitEcho(ctx context.Context, echo <-chan struct{}) {
	if !t.leased(t.now().UnixNano()) {
		return
	}
	timer := time.NewTimer(echoWait)
	defer timer.Stop()
	select {
	case <-echo:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// InvalidateAll drops everything in Redis, here and in every replica.
//
// The pass bumps generations with many scripts on many nodes, so it cannot
// publish atomically with them (and one message per user would flood every
// replica). It publishes "all" before the pass, so every replica flushes
// before any bump, and again after it, whether the pass succeeded or not,
// for what replicas re-read while it ran. If that last publish fails, the
// error is returned: the purge has failed and must be retried, as it must
// anyway when the pass fails half-way and leaves Redis half purged; and
// what a replica re-read during the pass lives at most to its fresh expiry.
func (t *Tiered) InvalidateAll(ctx context.Context) error {
	if err := t.publish(ctx, "all"); err != nil {
		t.dropAllLocal()
		return err
	}
	err := t.l2.InvalidateAll(ctx)
	t.dropAllLocal()
	echo, forget := t.expectEcho("all")
	defer forget()
	perr := t.publish(ctx, "all")
	if err == nil {
		err = perr
	}
	if perr == nil {
		t.awaitEcho(ctx, echo) // as for Invalidate
	}
	return err
}

// Ping reports whether Redis answers.
func (t *Tiered) Ping(ctx context.Context) error { return t.l2.Ping(ctx) }

// BreakerState reports the state of the Redis store's circuit breaker.
func (t *Tiered) BreakerState() BreakerState { return t.l2.BreakerState() }

func (t *Tiered) publish(ctx context.Context, msg string) error {
	if err := t.l2.client.Publish(ctx, t.channel, msg).Err(); err != nil {
		return fmt.Errorf("publishing invalidation: %w", err)
	}
	return nil
}

// dropLocal kills every tier item of user id read before now, and forgets
// records no item can need any more.
//
// A record kills items whose read began before it (seq < the record's seq).
// Such an item may sit in the tier from before the record (dropLocal cannot
// find a user's items: their keys hold scopes it does not know), or be
// inserted after it, at most recordSlack later (see insert). Either way it
// stops being served at its expiry, at most longest after its insertion.
// So a record is needed until recordSlack + longest after it, and no longer:
// the longest item lifetime (at most maxItemLife, in practice -cache-ttl)
// plus the read bound. insert holds mu shared from its checks until the item
// is visible, so a record cannot be pruned in between.
func (t *Tiered) dropLocal(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.seq.Add(1)
	now := t.now() // after seq: every read that this record kills began earlier
	t.inval.Store(id, seq)
	t.records = append(t.records, invalRecord{id: id, seq: seq, at: now})
	keep := recordSlack + time.Duration(t.longest.Load())
	n := 0
	for n < len(t.records) && now.Sub(t.records[n].at) > keep {
		r := t.records[n]
		t.inval.CompareAndDelete(r.id, r.seq) // a later record of the same user stays
		n++
	}
	clear(t.records[:n])
	t.records = t.records[n:]
	t.nInval.Store(int64(len(t.records)))
}

// dropAllLocal kills every tier item. The records go too: the floor kills
// everything they could.
func (t *Tiered) dropAllLocal() {
	t.mu.Lock()
	t.floor.Store(t.seq.Add(1))
	t.inval.Clear()
	t.records = nil
	t.nInval.Store(0)
	t.mu.Unlock()
	t.l1.InvalidateAll()
}

// Stats returns a snapshot of the tier.
func (t *Tiered) Stats() L1Stats {
	s := t.counter.Snapshot()
	return L1Stats{
		Hits: t.hits.Load(), Misses: t.misses.Load(), Evictions: s.Evictions,
		InvalidationsReceived: t.received.Load(), Subscribes: t.subscribes.Load(),
		LeaseMisses: t.leaseMisses.Load(), LeaseValid: t.leased(t.now().UnixNano()),
		Bytes: t.l1.WeightedSize(), Entries: t.l1.EstimatedSize(),
	}
}

// Redis returns the store behind the tier.
func (t *Tiered) Redis() *Redis { return t.l2 }
