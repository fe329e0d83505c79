package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
	"github.com/redis/go-redis/v9"
)

// L1Options configures a Tiered store's in-process tier. Zero values are
// documented defaults.
type L1Options struct {
	// MaxBytes bounds the tier, counted like Memory counts items. Zero
	// means 32 MiB: the hot set of a frontend's users, not the whole cache.
	MaxBytes int64
	// TTL is how long an entry stays in the tier after it was read from
	// Redis, and so the longest a replica can serve data that missed an
	// invalidation while its subscription was down. Zero means 1s.
	TTL time.Duration
	// Channel is the Redis pub/sub channel invalidations are published on.
	// Zero means "<prefix>:invalidations" of the Redis store.
	Channel string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Tiered is a Redis store with a small in-process tier (L1) in front of it,
// with W-TinyLFU admission (otter) so a scan of cold users cannot flush the
// hot set. It is correct across replicas: every invalidation is applied to
// Redis, dropped locally, and published so that every replica drops it too;
// and an L1 entry lives at most L1Options.TTL, so even an invalidation whose
// message was lost is honoured within that bound. Scope isolation holds as in
// Redis: L1 is keyed by the same Key.
//
// Run must be running for invalidations from other replicas to arrive.
type Tiered struct {
	l2      *Redis
	l1      *otter.Cache[Key, *l1Item]
	counter *stats.Counter
	ttl     time.Duration
	channel string
	now     func() time.Time

	// seq numbers invalidations. An L1 item remembers seq as it was before
	// the Redis read that produced it; the item is dead if its user (or
	// everybody: floor) was invalidated later.
	seq        atomic.Uint64
	floor      atomic.Uint64
	nInval     atomic.Int64 // len(inval), read lock-free on the hit path
	mu         sync.Mutex   // protects inval
	inval      map[string]invalRecord
	received   atomic.Uint64 // invalidation messages applied from other replicas
	subscribes atomic.Uint64 // times the subscription was (re)established
	hits       atomic.Uint64
	misses     atomic.Uint64
}

type l1Item struct {
	e   Entry
	gen uint64
	seq uint64
}

type invalRecord struct {
	seq uint64
	at  time.Time
}

// L1Stats is a snapshot of the in-process tier, for metrics.
type L1Stats struct {
	Hits, Misses, Evictions, InvalidationsReceived uint64
	Subscribes                                     uint64 // (re)subscriptions, each of which flushed the tier
	Bytes                                          uint64
	Entries                                        int
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
	t := &Tiered{l2: l2, ttl: opts.TTL, channel: opts.Channel, now: opts.Now,
		counter: stats.NewCounter(), inval: map[string]invalRecord{}}
	var err error
	t.l1, err = otter.New(&otter.Options[Key, *l1Item]{
		MaximumWeight: uint64(opts.MaxBytes),
		Weigher: func(k Key, it *l1Item) uint32 {
			return uint32(min(len(it.e.Body)+len(it.e.ContentType)+len(k.ID)+len(k.Scope)+itemOverhead, 1<<31))
		},
		ExpiryCalculator: otter.ExpiryWriting[Key, *l1Item](opts.TTL),
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

// GetLocal answers from the in-process tier only, without I/O. The
// returned Body is shared with the tier: callers must not modify it. A miss
// here is not counted as a tier miss; Get counts it if it goes to Redis.
func (t *Tiered) GetLocal(k Key) (e Entry, gen uint64, ok bool) {
	it, ok := t.l1.GetIfPresent(k)
	if !ok || !t.alive(k.ID, it.seq) {
		return Entry{}, 0, false
	}
	t.hits.Add(1)
	return it.e, it.gen, true
}

// alive reports whether an item read at seq has not been invalidated since.
func (t *Tiered) alive(id string, seq uint64) bool {
	if seq < t.floor.Load() {
		return false
	}
	if t.nInval.Load() == 0 {
		return true
	}
	t.mu.Lock()
	r, ok := t.inval[id]
	t.mu.Unlock()
	return !ok || seq >= r.seq
}

// Get answers from the tier, or from Redis (and keeps the answer in the
// tier). The returned Body is shared with the tier: callers must not modify
// it.
func (t *Tiered) Get(ctx context.Context, k Key) (e Entry, gen uint64, ok bool, err error) {
	if e, gen, ok := t.GetLocal(k); ok {
		return e, gen, true, nil
	}
	t.misses.Add(1)
	seq := t.seq.Load()
	e, gen, ok, err = t.l2.Get(ctx, k)
	if err == nil && ok {
		t.l1.Set(k, &l1Item{e: e, gen: gen, seq: seq})
	}
	return e, gen, ok, err
}

// Set stores in Redis (see Redis.Set) and, once stored, in the tier.
func (t *Tiered) Set(ctx context.Context, k Key, e Entry, ttl time.Duration, gen uint64) error {
	seq := t.seq.Load()
	if err := t.l2.Set(ctx, k, e, ttl, gen); err != nil {
		return err
	}
	if ttl > 0 {
		t.l1.Set(k, &l1Item{e: e, gen: gen, seq: seq})
	}
	return nil
}

// Invalidate drops every scope of user id in Redis, here, and — through the
// channel — in every replica's tier. The local tier is dropped even when
// Redis fails.
func (t *Tiered) Invalidate(ctx context.Context, id string) error {
	err := t.l2.Invalidate(ctx, id)
	t.dropLocal(id)
	if err != nil {
		return err
	}
	return t.publish(ctx, "id:"+id)
}

// InvalidateAll drops everything in Redis, here and in every replica.
func (t *Tiered) InvalidateAll(ctx context.Context) error {
	err := t.l2.InvalidateAll(ctx)
	t.dropAllLocal()
	if err != nil {
		return err
	}
	return t.publish(ctx, "all")
}

// Ping reports whether Redis answers.
func (t *Tiered) Ping(ctx context.Context) error { return t.l2.Ping(ctx) }

func (t *Tiered) publish(ctx context.Context, msg string) error {
	if err := t.l2.client.Publish(ctx, t.channel, msg).Err(); err != nil {
		return fmt.Errorf("publishing invalidation: %w", err)
	}
	return nil
}

// recordSlack is added to the tier's TTL before an invalidation record is
// forgotten. An item whose Redis read began before the invalidation may be
// inserted after it, as late as the read's own timeout; the record must
// outlive that item. Reads are bounded by the cache budget (milliseconds),
// far below this.
const recordSlack = 10 * time.Second

// dropLocal kills every tier item of user id read before now, and forgets
// records old enough that every item they could kill has expired.
func (t *Tiered) dropLocal(id string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inval[id] = invalRecord{seq: t.seq.Add(1), at: now}
	for k, r := range t.inval {
		if now.Sub(r.at) > t.ttl+recordSlack {
			delete(t.inval, k)
		}
	}
	t.nInval.Store(int64(len(t.inval)))
}

func (t *Tiered) dropAllLocal() {
	t.floor.Store(t.seq.Add(1))
	t.l1.InvalidateAll()
}

// Run applies invalidations published by every replica until ctx is done.
// Whenever the subscription is (re)established the whole tier is dropped:
// messages may have been missed while it was down.
func (t *Tiered) Run(ctx context.Context) error {
	ps := t.l2.client.Subscribe(ctx, t.channel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return errors.New("invalidation subscription closed")
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					t.dropAllLocal()
					t.subscribes.Add(1)
				}
			case *redis.Message:
				t.received.Add(1)
				if id, ok := strings.CutPrefix(m.Payload, "id:"); ok {
					t.dropLocal(id)
				} else {
					t.dropAllLocal()
				}
			}
		}
	}
}

// Stats returns a snapshot of the tier.
func (t *Tiered) Stats() L1Stats {
	s := t.counter.Snapshot()
	return L1Stats{
		Hits: t.hits.Load(), Misses: t.misses.Load(), Evictions: s.Evictions,
		InvalidationsReceived: t.received.Load(), Subscribes: t.subscribes.Load(),
		Bytes: t.l1.WeightedSize(), Entries: t.l1.EstimatedSize(),
	}
}

// Redis returns the store behind the tier.
func (t *Tiered) Redis() *Redis { return t.l2 }
