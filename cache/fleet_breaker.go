package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/breaker"
)

// FleetOptions configures a FleetBreaker. A zero field means the documented
// default.
type FleetOptions struct {
	// Timeout bounds each operation, as -redis-timeout bounds the store's:
	// a Redis slower than that leaves the replica on its own breaker.
	// Zero means 100ms (ClientOptions' default).
	Timeout time.Duration

	// ID names this replica in the record. Empty means the host name plus
	// 8 random bytes, so two processes on one host (or one process's tests)
	// never share an id.
	ID string
}

// FleetBreaker is the record, in the Redis the store uses, of which
// replicas found the upstream broken: the shared half of the fleet-wide
// breaker hint (upstream.FleetBreaker; the policy lives in package
// upstream). It is safe for concurrent use and holds no state of its own
// besides its id: every answer comes from Redis.
//
// Key layout (the keys share one Cluster hash slot through the hash tag,
// so Clear is one DEL; they are outside the "<prefix>:{<id>}:*" pattern
// of user keys, so a purge of every user leaves them alone):
//
//	<prefix>:fleet:{breaker}:reports   sorted set: replica id → report expiry (Redis clock, Unix ms)
//	<prefix>:fleet:{breaker}:probe     the probe lease: the holder's id, with a TTL
//	<prefix>:fleet:{breaker}:failures  hash: replica id → failed calls since the last success anywhere
//
// Expiries are read against Redis's clock (TIME inside the scripts), never
// a replica's, so clock skew between replicas cannot stretch or shorten a
// report. Every operation goes through the store's circuit breaker: while
// Redis is down it fails at once with ErrUnavailable, and the replica
// stays on its own breaker.
type FleetBreaker struct {
	store    *Redis
	id       string
	timeout  time.Duration
	reports  string
	probe    string
	failures string
	report   *redis.Script // reportScript
	view     *redis.Script // viewScript
}

// NewFleetBreaker returns the fleet record kept in store's Redis, under
// store's key prefix.
func NewFleetBreaker(store *Redis, opts FleetOptions) *FleetBreaker {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.ID == "" {
		opts.ID = replicaID()
	}
	base := store.prefix + ":fleet:{breaker}:"
	return &FleetBreaker{
		store:    store,
		id:       opts.ID,
		timeout:  opts.Timeout,
		reports:  base + "reports",
		probe:    base + "probe",
		failures: base + "failures",
		report:   redis.NewScript(reportScript),
		view:     redis.NewScript(viewScript),
	}
}

// replicaID is the host name (the pod name in Kubernetes, which is what an
// operator looking at the record wants to see) and 8 random bytes.
func replicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "replica"
	}
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand's contract since Go 1.24)
	return host + "-" + hex.EncodeToString(b[:])
}

// ID returns the name this replica's reports and probe lease carry.
func (f *FleetBreaker) ID() string { return f.id }

// reportScript records that replica ARGV[1] found the upstream broken for
// the next ARGV[2] ms, drops reports that have lapsed, and keeps the set
// alive as long as its longest report. KEYS[1] is the reports set.
const reportScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`

// viewScript reads the record; with ARGV[2] > 0 it first counts one failed
// upstream call of replica ARGV[1], for a window of ARGV[2] ms. It returns
// how many replicas hold a live report, 1 if ARGV[1] is one of them (else
// 0), the probe lease's PTTL (negative when there is none), the failures
// since the last success and how many replicas they came from. KEYS[1] is
// the reports set, KEYS[2] the probe lease, KEYS[3] the failure counts (a
// hash: replica id → failures).
const viewScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
if window > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  redis.call('PEXPIRE', KEYS[3], window)
end
local n = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local own = 0
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
if mine and tonumber(mine) > now then
  own = 1
end
local failures = 0
local counts = redis.call('HVALS', KEYS[3])
for i = 1, #counts do
  failures = failures + tonumber(counts[i])
end
return {n, own, redis.call('PTTL', KEYS[2]), failures, #counts}
`

// Report announces that this replica's breaker found the upstream broken,
// for ttl from now (by Redis's clock); a report replaces this replica's
// previous one.
func (f *FleetBreaker) Report(ctx context.Context, ttl time.Duration) error {
	ms := max(ttl.Milliseconds(), 1)
	err := f.do(ctx, func(ctx context.Context) error {
		return f.report.Run(ctx, f.store.client, []string{f.reports}, f.id, ms).Err()
	})
	if err != nil {
		return fmt.Errorf("reporting the upstream breaker open: %w", err)
	}
	return nil
}

// View reads the record.
func (f *FleetBreaker) View(ctx context.Context) (breaker.FleetView, error) {
	v, err := f.look(ctx, 0)
	if err != nil {
		return v, fmt.Errorf("reading the fleet breaker record: %w", err)
	}
	return v, nil
}

// Fail counts one failed upstream call of this replica, for window (the
// breaker's interval: counts older than that are forgotten), and reads the
// record, all in one round trip.
func (f *FleetBreaker) Fail(ctx context.Context, window time.Duration) (breaker.FleetView, error) {
	v, err := f.look(ctx, max(window.Milliseconds(), 1))
	if err != nil {
		return v, fmt.Errorf("counting a failure in the fleet breaker record: %w", err)
	}
	return v, nil
}

// look runs viewScript; window 0 reads only.
func (f *FleetBreaker) look(ctx context.Context, window int64) (breaker.FleetView, error) {
	var view breaker.FleetView
	err := f.do(ctx, func(ctx context.Context) error {
		v, err := f.view.Run(ctx, f.store.client, []string{f.reports, f.probe, f.failures}, f.id, window).Int64Slice()
		if err != nil {
			return err
		}
		if len(v) != 5 {
			return fmt.Errorf("unexpected reply of %d values", len(v))
		}
		view = breaker.FleetView{
			Reports:  int(v[0]),
			Own:      v[1] == 1,
			ProbeIn:  time.Duration(max(v[2], 0)) * time.Millisecond,
			Failures: int(v[3]),
			Failing:  int(v[4]),
		}
		return nil
	})
	if err != nil {
		return breaker.FleetView{}, err
	}
	return view, nil
}

// Reset forgets the fleet's failure counts: an upstream call succeeded.
func (f *FleetBreaker) Reset(ctx context.Context) error {
	err := f.do(ctx, func(ctx context.Context) error {
		return f.store.client.Del(ctx, f.failures).Err()
	})
	if err != nil {
		return fmt.Errorf("resetting the fleet failure counts: %w", err)
	}
	return nil
}

// TryProbe takes the fleet's probe lease for lease (SET NX PX) and reports
// whether it got it; false means another replica holds it.
func (f *FleetBreaker) TryProbe(ctx context.Context, lease time.Duration) (won bool, err error) {
	err = f.do(ctx, func(ctx context.Context) error {
		err := f.store.client.SetArgs(ctx, f.probe, f.id, redis.SetArgs{Mode: "NX", TTL: lease}).Err()
		switch {
		case err == nil:
			won = true
		case errors.Is(err, redis.Nil):
			err = nil // held by another replica: an answer, not a failure
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("taking the fleet probe lease: %w", err)
	}
	return won, nil
}

// Clear drops every replica's report, the probe lease and the failure
// counts: a probe found the upstream healthy.
func (f *FleetBreaker) Clear(ctx context.Context) error {
	err := f.do(ctx, func(ctx context.Context) error {
		return f.store.client.Del(ctx, f.reports, f.probe, f.failures).Err()
	})
	if err != nil {
		return fmt.Errorf("clearing the fleet breaker record: %w", err)
	}
	return nil
}

// do runs op within the timeout, through the store's breaker.
func (f *FleetBreaker) do(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return f.store.guard(func() error { return op(ctx) })
}
