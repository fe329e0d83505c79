package readthrough

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// Leases shares fills between the replicas that share a cache, so that a
// cold key costs one upstream call fleet-wide, not one per replica
// (cache.FillLeases). The local single flight stays in front: a replica asks
// for at most one lease per key at a time.
type Leases interface {
	// Watch registers for k's announced outcomes until stop; a zero
	// LeaseState asks the watcher to poll now.
	Watch(k cache.Key) (announced <-chan cache.LeaseState, stop func())
	// TryLease takes k's lease for ttl (Token set), or says who holds it
	// (Holder, for Left more at most), or how holder's fill went
	// (Outcome), holder being the token of the lease waited on, if any.
	TryLease(ctx context.Context, k cache.Key, ttl time.Duration, holder string) (cache.LeaseState, error)
	// Release ends a held lease with outcome, readable by pollers for linger.
	Release(ctx context.Context, k cache.Key, token, outcome string, linger time.Duration) (bool, error)
	// Subscribed reports whether announcements reach this replica now.
	Subscribed() bool
}

// Outcomes of a leased fill, as told to the replicas that waited on it.
// A failure carries its error's class, so a waiter answers exactly as it
// would have had it called the upstream itself (classify, stale-if-error).
const (
	leaseStored    = "s" // stored: read the entry
	leaseNotStored = "n" // answered but not stored (401/403, a refused or failed store): fill on your own
)

// fleetErrors decodes the error classes a failed fill announces; encode
// with leaseFailure.
var fleetErrors = map[byte]error{
	'b': upstream.ErrBreakerOpen,
	't': upstream.ErrTimeout,
	'l': upstream.ErrBodyTooLarge,
	'j': errInvalidJSON,
	'c': errFleetUnreachable,
}

// errFleetUnreachable stands for a connection error another replica's fill
// met: classify's default ("unavailable").
var errFleetUnreachable = errors.New("upstream unreachable (another replica's fill)")

// leaseFailure encodes err's class: "e" and a class byte, or for an
// upstream status error "u<status> <Retry-After>".
func leaseFailure(err error) string {
	var se *upstreamStatusError
	switch {
	case errors.As(err, &se):
		return "u" + strconv.Itoa(se.status) + " " + se.retryAfter
	case errors.Is(err, upstream.ErrBreakerOpen):
		return "eb"
	case errors.Is(err, upstream.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "et"
	case errors.Is(err, upstream.ErrBodyTooLarge):
		return "el"
	case errors.Is(err, errInvalidJSON):
		return "ej"
	default:
		return "ec"
	}
}

// parseLeaseFailure decodes leaseFailure's encoding; nil for anything else.
func parseLeaseFailure(s string) error {
	if status, ra, ok := strings.Cut(strings.TrimPrefix(s, "u"), " "); ok && strings.HasPrefix(s, "u") {
		if n, err := strconv.Atoi(status); err == nil && n >= 100 && n < 600 {
			return &upstreamStatusError{status: n, retryAfter: ra}
		}
		return nil
	}
	if len(s) == 2 && s[0] == 'e' {
		return fleetErrors[s[1]]
	}
	return nil
}

// leased fills k under the fleet's lease: it takes the lease and fills, or
// waits for the replica that holds it and answers from its fill. nil means
// the fleet could not help (Redis unavailable, or the holder's answer is
// not one this replica may reuse): fill on your own. ctx bounds the whole
// fill; each Redis call gets the cache budget.
//
// then is the rest of a fill this replica leads under the lease: its store
// and the lease's release, after the answer.
func (e *Engine) leased(ctx context.Context, k cache.Key, cred upstream.Credentials, gen uint64) (res *fillResult, then func()) {
	announced, stop := e.leases.Watch(k) // before asking: no announcement slips between
	defer stop()
	result := metrics.LeaseWon
	st, err := e.tryLease(ctx, k, "")
	poll := time.NewTimer(e.nextPoll(st.Left))
	defer poll.Stop()
	for st.Token == "" && st.Outcome == "" {
		if err != nil {
			e.m.FillLeases.WithLabelValues(metrics.LeaseFallback).Inc()
			e.log.Warn("fill lease unavailable; filling without it", "id", k.ID, "err", err)
			return nil, nil
		}
		select {
		case a := <-announced:
			if a.Holder != "" {
				if a.Holder == st.Holder {
					st = a
				}
				continue // the end of this lease, or of another: keep waiting
			}
			// The subscription came back: announcements may have been
			// missed. Ask now.
		case <-poll.C:
		case <-ctx.Done():
			// The holder took longer than this whole fill may: answer
			// as a timeout would (the lease is bounded by the upstream
			// timeout, so this is rare).
			e.m.FillLeases.WithLabelValues(metrics.LeaseWaited).Inc()
			return &fillResult{err: ctx.Err()}, nil
		}
		st, err = e.tryLease(ctx, k, st.Holder)
		poll.Reset(e.nextPoll(st.Left))
		result = metrics.LeaseExpired // if this try took the lease: the holder never answered
	}
	token, outcome := st.Token, st.Outcome
	if token != "" {
		e.m.FillLeases.WithLabelValues(result).Inc()
		return e.fillHeld(ctx, k, cred, gen, token)
	}
	e.m.FillLeases.WithLabelValues(metrics.LeaseWaited).Inc()
	if outcome == leaseStored {
		en, _, ok, err := e.lookup(ctx, k)
		if err == nil && ok && e.now().Before(en.Expires) {
			return &fillResult{entry: en, fleet: true}, nil
		}
		return nil, nil // dropped meanwhile (a write): fill on your own
	}
	if err := parseLeaseFailure(outcome); err != nil {
		return &fillResult{err: err, fleet: true}, nil
	}
	return nil, nil
}

// nextPoll is how long a waiter waits for an announcement before asking
// Redis again, the holder's lease having left more. With announcements
// reaching this replica, only a holder that died goes unannounced: ask
// again when its lease runs out, or after a second, in case the
// subscription died unnoticed. Without, poll.
func (e *Engine) nextPoll(left time.Duration) time.Duration {
	if e.leases.Subscribed() {
		return min(max(left+time.Millisecond, e.leasePoll), time.Second)
	}
	return e.leasePoll
}

// tryLease is one TryLease within the cache budget.
func (e *Engine) tryLease(ctx context.Context, k cache.Key, holder string) (cache.LeaseState, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cacheTO)
	defer cancel()
	return e.leases.TryLease(ctx, k, e.leaseTTL, holder)
}

// fillHeld fills k under the lease held with token. It answers at once;
// then stores the answer and releases the lease with the outcome for the
// replicas that waited (who read the entry: it must be stored first).
func (e *Engine) fillHeld(ctx context.Context, k cache.Key, cred upstream.Credentials, gen uint64, token string) (res *fillResult, then func()) {
	res = e.fetch(ctx, k, cred)
	store := e.storable(res, false)
	res.stored = store
	return res, func() {
		outcome := leaseNotStored
		switch {
		case res.err != nil:
			outcome = leaseFailure(res.err)
		case store && e.store1(ctx, k, res.entry, e.retention(res.entry.Status, res.ttl), gen):
			outcome = leaseStored
		}
		rctx, cancel := context.WithTimeout(ctx, e.cacheTO)
		defer cancel()
		// Long enough for a waiter whose subscription is down to poll once more.
		if _, err := e.leases.Release(rctx, k, token, outcome, 2*e.leasePoll); err != nil {
			// Waiters find out when the lease expires; nothing else is lost.
			e.log.Warn("fill lease release failed; waiters wait for it to expire", "id", k.ID, "err", err)
		}
	}
}
