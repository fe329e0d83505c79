package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// RedisOptions configures a Redis store. A zero field means the documented
// default, filled in once by NewRedis.
type RedisOptions struct {
	// Prefix starts every key name, so that several deployments can share one
	// Redis. Zero means "userproxy".
	Prefix string

	// GenerationTTL is how long a user's generation key lives after an
	// Invalidate at least (longer if entries written later need it to). It
	// must exceed the longest fill — the time from a Get to the Set that
	// follows it — by a wide margin: if the key expired in between, a fill
	// that raced an invalidation could be stored. Zero means 24h.
	GenerationTTL time.Duration

	// Breaker configures the circuit breaker around every Redis call.
	Breaker BreakerOptions

	// Sealer, if non-nil, encrypts every entry before it is written and
	// decrypts it after it is read; unsealed or unopenable values are
	// misses. Nil stores entries in the clear.
	Sealer *Sealer

	// AutoPipeline batches the reads of concurrent lookups into shared
	// pipelines (see readBatcher): one write and one read per batch instead
	// of a round trip each, which under load is most of what a read costs
	// the proxy and Redis (system calls). A lone read still goes out at
	// once, and each caller still waits no longer than its own context.
	// Each pipeline is one call of the breaker. False sends each read on
	// its own.
	AutoPipeline bool

	// OnCorrupt, if non-nil, is called once for each entry read that cannot
	// be decrypted or decoded, which is then treated as a miss (and
	// overwritten by the next fill). err wraps ErrCorrupt and names the
	// user id, never the entry's contents or the scope. It is called on the
	// reading goroutine, so it must be quick and safe for concurrent use.
	// Nil: not reported.
	//
	// It counts an entry of an unknown version, including a newer one: in a
	// bad rollout (or a rollback across a format change) that is what an
	// operator must see. It counts a value this store cannot open: written
	// in the clear for a store with a Sealer or sealed for one without, or
	// sealed with a key the Sealer does not hold. It does not count an entry
	// written under an older generation, which Invalidate has dropped: that
	// is the normal invalidation fence, not damage.
	OnCorrupt func(err error)
}

const (
	defaultPrefix        = "userproxy"
	defaultGenerationTTL = 24 * time.Hour
)

// Redis is a cache store in Redis, shared by every replica. It is safe for
// concurrent use.
//
// Key layout (one user's keys share a Cluster hash slot, thanks to the hash
// tag on the id):
//
//	<prefix>:{<id>}:<scope>  an encoded entry (see Entry.AppendBinary), with a TTL
//	<prefix>:{<id>}:gen      the user's generation, a decimal counter; missing = 0
//
// Invariant: the generation key always outlives every entry of its user (Set
// extends it when needed). An entry written under generation g is therefore
// never read after the generation key expired and was restarted at 0, and
// cannot come back to life once invalidated.
type Redis struct {
	client     redis.UniversalClient
	batch      *readBatcher // nil unless RedisOptions.AutoPipeline
	reads      sync.Pool    // of *readCall
	prefix     string
	genTTL     time.Duration
	set        *redis.Script // setScript
	invalidate *redis.Script // invalidateScript
	breaker    *gobreaker.CircuitBreaker[struct{}]
	sealer     *Sealer         // nil: entries in the clear
	onCorrupt  func(err error) // nil: not reported
}

// NewRedis returns a store that uses client, which the caller owns and closes.
// The client should have ContextTimeoutEnabled so that the deadlines of the
// contexts passed to the store's methods apply (NewUniversalClient does so).
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if opts.GenerationTTL <= 0 {
		opts.GenerationTTL = defaultGenerationTTL
	}
	r := &Redis{
		client:     client,
		prefix:     opts.Prefix,
		genTTL:     opts.GenerationTTL,
		set:        redis.NewScript(setScript),
		invalidate: redis.NewScript(invalidateScript),
		breaker:    newStoreBreaker(opts.Breaker),
		sealer:     opts.Sealer,
		onCorrupt:  opts.OnCorrupt,
	}
	r.reads.New = newReadCall
	if opts.AutoPipeline {
		r.batch = newReadBatcher(client, r.breaker)
	}
	return r
}

// setScript stores an entry only if the user's generation is still the one
// the caller read, and makes the generation key outlive the entry.
//
// KEYS[1] generation key, KEYS[2] entry key;
// ARGV[1] generation read by the caller, ARGV[2] encoded entry, ARGV[3] TTL in ms.
// Returns 1 when stored, 0 when the generation changed.
const setScript = `
local gen = redis.call('GET', KEYS[1])
if not gen then gen = '0' end
if gen ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
local genTTL = redis.call('PTTL', KEYS[1])
if genTTL == -2 then
  redis.call('SET', KEYS[1], '0', 'PX', ttl)
elseif genTTL >= 0 and genTTL < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`

// invalidateScript bumps a user's generation, makes the generation key
// live at least GenerationTTL from now and, when given a channel, publishes
// "id:<id>" on it. Publishing in the script makes "generation bumped" imply
// "every subscribed replica was told" (see Tiered): a PUBLISH sent after the
// script could fail on its own. Under Redis Cluster the message is broadcast
// over the cluster bus to subscribers on every node.
//
// Setting a TTL only when the key has none (PTTL -1) is not enough: a
// generation key created by Set carries the (short) entry TTL, and INCR keeps
// it, so the bumped key could expire a moment later, restarting the
// generation at 0 and letting a fill that read 0 before the bump be stored.
// Extending every bumped key to GenerationTTL closes that window; it never
// shortens a TTL, so the key still outlives every entry.
//
// KEYS[1] generation key; ARGV[1] GenerationTTL in ms; optional ARGV[2]
// channel and ARGV[3] user id. Returns the new generation.
const invalidateScript = `
local gen = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if ARGV[2] then
  redis.call('PUBLISH', ARGV[2], 'id:' .. ARGV[3])
end
return gen
`

// Get returns k's entry. ok is false on a miss, including an entry that does
// not decrypt or decode (it is treated as a miss, reported to
// RedisOptions.OnCorrupt, and left to be overwritten) and an entry written
// under an older generation. gen is the user's current generation; pass
// it to Set. It makes one round trip (MGET of the generation and entry keys).
//
// The returned Body and Header are the caller's: nothing else refers to them.
func (r *Redis) Get(ctx context.Context, k Key) (e Entry, gen uint64, ok bool, err error) {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return Entry{}, 0, false, fmt.Errorf("reading cache entry: %w", err)
	}
	c := r.newRead(k)
	gone, err := r.read(ctx, c)
	if gone {
		// The batcher still holds c: it is not released.
		return Entry{}, 0, false, fmt.Errorf("reading cache entry: %w", err)
	}
	defer r.release(c)
	if err != nil {
		return Entry{}, 0, false, fmt.Errorf("reading cache entry: %w", err)
	}
	gen, err = parseGen(c.vals[0])
	if err != nil {
		return Entry{}, 0, false, fmt.Errorf("reading cache generation: %w", err)
	}
	b := c.vals[1]
	if b == nil {
		return Entry{}, gen, false, nil // no entry
	}
	// b is ours (see readCall): the Body and Header that DecodeEntry
	// aliases are ours to give away.
	if r.sealer != nil {
		if b, err = r.sealer.open(b, c.entryKey()); err != nil {
			r.corrupt(k, err) // as undecodable: a miss
			return Entry{}, gen, false, nil
		}
	}
	e, entryGen, err := DecodeEntry(b)
	if err != nil {
		// Undecodable (e.g. written by a newer release): a miss; the next
		// Set overwrites it.
		r.corrupt(k, err)
		return Entry{}, gen, false, nil
	}
	if entryGen != gen {
		// Written before an Invalidate: a miss, and no damage.
		return Entry{}, gen, false, nil
	}
	return e, gen, true, nil
}

// read reads c's keys into c.vals: batched or alone, raw, and again with
// go-redis's MGet if the raw reply is not two values (see readCall). gone
// reports that the caller's context ended while the batcher held c, which
// it still does (see readBatcher.mget).
func (r *Redis) read(ctx context.Context, c *readCall) (gone bool, err error) {
	switch {
	case r.batch == nil:
		err = r.guard(func() error { return sendRead(ctx, r.client, c) })
	case r.breaker.State() == gobreaker.StateOpen:
		// The batcher runs each pipeline through the breaker; a caller
		// only fails fast while it is open.
		return false, fmt.Errorf("%w: %w", ErrUnavailable, gobreaker.ErrOpenState)
	default:
		if gone, err = r.batch.mget(ctx, c); gone {
			return true, err
		}
	}
	if errors.Is(err, errNotValues) {
		err = r.guard(func() error { return r.readSlow(ctx, c) })
	}
	return false, err
}

// corrupt reports an entry of k that cannot be read to OnCorrupt.
func (r *Redis) corrupt(k Key, err error) {
	if r.onCorrupt != nil {
		r.onCorrupt(fmt.Errorf("reading cache entry of user %s: %w", k.ID, err))
	}
}

// parseGen reads a generation value from MGET: nil (missing) is 0.
func parseGen(v []byte) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	gen, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("generation is not a counter: %w", err)
	}
	return gen, nil
}

// Set stores e under k for ttl if the user's generation is still gen;
// otherwise it stores nothing and returns ErrGenerationChanged. It makes one
// round trip (a Lua script, by EVALSHA with an EVAL fallback). A ttl under a
// millisecond is rounded up to one; a ttl <= 0 stores nothing and returns nil.
// A Header past its limits (see Header) is refused with an error: stored, the
// entry could never be read back. Set keeps nothing of e.
func (r *Redis) Set(ctx context.Context, k Key, e Entry, ttl time.Duration, gen uint64) error {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return fmt.Errorf("storing cache entry: %w", err)
	}
	if err := e.Header.check(); err != nil {
		return fmt.Errorf("storing cache entry: %w", err)
	}
	if ttl <= 0 {
		return nil
	}
	ttlMS := max(ttl.Milliseconds(), 1)
	val := e.AppendBinary(make([]byte, 0, e.encodedLen()), gen)
	keys := []string{r.genKey(k.ID), r.entryKey(k)}
	if r.sealer != nil {
		val = r.sealer.seal(val, keys[1])
	}
	var stored int
	err := r.guard(func() (err error) {
		stored, err = r.set.Run(ctx, r.client, keys, strconv.FormatUint(gen, 10), val, ttlMS).Int()
		return err
	})
	if err != nil {
		return fmt.Errorf("storing cache entry: %w", err)
	}
	if stored == 0 {
		return ErrGenerationChanged
	}
	return nil
}

// Invalidate drops every scope's entry for user id, by bumping the user's
// generation: the old entries stay in Redis until their TTL but are never
// returned again. It makes one round trip.
func (r *Redis) Invalidate(ctx context.Context, id string) error {
	return r.invalidateUser(ctx, id, "")
}

// invalidateUser is Invalidate that also publishes "id:<id>" on channel, in
// the same script, unless channel is empty.
func (r *Redis) invalidateUser(ctx context.Context, id, channel string) error {
	if err := ValidateKey(id, ""); err != nil {
		return fmt.Errorf("invalidating cached user: %w", err)
	}
	args := []any{r.genTTL.Milliseconds()}
	if channel != "" {
		args = append(args, channel, id)
	}
	err := r.guard(func() error {
		return r.invalidate.Run(ctx, r.client, []string{r.genKey(id)}, args...).Err()
	})
	if err != nil {
		return fmt.Errorf("invalidating cached user: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers. It bypasses the circuit breaker, so
// that readiness reports what Redis does now, not what it did.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("pinging redis: %w", err)
	}
	return nil
}

// PoolStats is a snapshot of the Redis client's connection pool (summed
// over the nodes of a Cluster), for metrics.
type PoolStats struct {
	Hits     uint32 // cumulative: a free connection was found in the pool
	Misses   uint32 // cumulative: no free connection was found
	Timeouts uint32 // cumulative: waiting for a connection timed out

	TotalConns uint32 // connections now
	IdleConns  uint32 // idle connections now
	StaleConns uint32 // cumulative: stale connections removed
}

// PoolStats returns the client's connection pool statistics, for metrics.
func (r *Redis) PoolStats() PoolStats {
	s := r.client.PoolStats()
	return PoolStats{
		Hits: s.Hits, Misses: s.Misses, Timeouts: s.Timeouts,
		TotalConns: s.TotalConns, IdleConns: s.IdleConns, StaleConns: s.StaleConns,
	}
}

func (r *Redis) entryKey(k Key) string {
	return r.prefix + ":{" + k.ID + "}:" + k.Scope
}

func (r *Redis) genKey(id string) string {
	return r.prefix + ":{" + id + "}:" + genSuffix
}
