package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The fleet-wide breaker hint: replicas sharing a Redis tell each other
// when their breakers open, so that an upstream outage costs the fleet
// about -breaker-failures failing calls and one probe per open period,
// not that many per replica. Each replica's gobreaker stays the authority
// for itself; the hint only makes a replica more careful:
//
//   - a replica whose breaker opens reports it, for the open period plus
//     one upstream timeout (the time its half-open probe may take);
//   - while another replica has a live report, a failure trips this
//     replica's breaker at once (ReadyToTrip consults the hint);
//   - while at least Quorum other replicas have live reports, a replica
//     whose own breaker is closed treats the upstream as open: Fetch fails
//     with ErrFleetOpen (so ErrBreakerOpen: stale answers or 503), except
//     for the one call that takes the fleet's probe lease;
//   - a half-open breaker's trial call must take the same lease, so the
//     fleet sends one probe per open period, not one per reporter;
//   - a probe that succeeds clears every report and the lease; one that
//     fails trips the prober's breaker, which reports again.
//
// Redis down or slow: View, TryProbe and Report fail (within the Redis
// timeout) and the replica is on its own breaker, exactly as without the
// hint.

// DefaultFleetQuorum is Options.FleetQuorum's default: two replicas must
// agree, so that a lone replica with a broken network path cannot stop the
// fleet.
const DefaultFleetQuorum = 2

// ErrFleetOpen is returned (wrapped, together with ErrBreakerOpen) by Fetch
// when this replica's breaker would let the call through but the fleet's
// hint does not: at least Options.FleetQuorum other replicas have reported
// the upstream broken, or this replica's breaker is half-open, and another
// replica holds the fleet's probe lease.
var ErrFleetOpen = errors.New("upstream reported broken by the fleet")

// FleetBreaker is the record, shared by every replica, of which replicas
// found the upstream broken (package cache keeps it in Redis). Its four
// methods are the four things the hint does to the record; none of them
// may block past the Redis timeout, and an error means "Redis is not
// answering": the replica then acts on its own.
type FleetBreaker interface {
	// Report announces that this replica's breaker is open, for ttl; it
	// replaces this replica's previous report.
	Report(ctx context.Context, ttl time.Duration) error
	// View returns how many distinct replicas hold a live report, whether
	// this replica is one of them, and how long until the probe lease
	// lapses (0 when free).
	View(ctx context.Context) (reports int, own bool, probeIn time.Duration, err error)
	// TryProbe takes the fleet's probe lease for lease if nobody holds it
	// (SET NX PX), and reports whether it did.
	TryProbe(ctx context.Context, lease time.Duration) (bool, error)
	// Clear drops every report and the probe lease.
	Clear(ctx context.Context) error
}

// fleetHint is a Client's side of the hint: its last view of the record,
// refreshed by RunFleet and after each failed call.
type fleetHint struct {
	fb        FleetBreaker
	quorum    int
	lease     time.Duration // the probe lease: one open period
	probeTime time.Duration // a report outlives the open period by this: the upstream timeout
	every     time.Duration // how often RunFleet reads the record
	staleness time.Duration // a view older than this counts as no reports
	onChange  func(reports int, state BreakerState)

	// reportDue is set when the breaker opens (under gobreaker's lock,
	// where no I/O may happen) and cleared once Report succeeded.
	reportDue atomic.Bool

	mu      sync.Mutex // protects the fields below; orders onChange calls
	reports int        // distinct replicas with a live report
	own     bool       // one of them is this replica
	probeAt time.Time  // when the probe lease lapses, as last seen
	seenAt  time.Time  // when the view was read; zero: never
	probing int        // this replica's probes in flight
	shown   fleetShown // last passed to onChange
}

type fleetShown struct {
	reports int
	state   BreakerState
}

func newFleetHint(o Options) *fleetHint {
	if o.Fleet == nil {
		return nil
	}
	every := min(o.Breaker.OpenTimeout/4, 250*time.Millisecond)
	every = max(every, 10*time.Millisecond)
	return &fleetHint{
		fb:        o.Fleet,
		quorum:    o.FleetQuorum,
		lease:     o.Breaker.OpenTimeout,
		probeTime: o.Timeout,
		every:     every,
		staleness: max(4*every, time.Second),
		onChange:  o.OnFleetChange,
	}
}

// others returns how many other replicas have a live report, 0 when the
// view is stale (Redis not answering: on our own). It runs under
// gobreaker's lock (ReadyToTrip), so it must not do I/O.
func (h *fleetHint) others() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.othersLocked(time.Now())
}

func (h *fleetHint) othersLocked(now time.Time) int {
	if h.seenAt.IsZero() || now.Sub(h.seenAt) > h.staleness {
		return 0
	}
	n := h.reports
	if h.own {
		n--
	}
	return n
}

// inForce reports whether at least quorum other replicas have reported the
// upstream broken.
func (h *fleetHint) inForce() bool { return h.others() >= h.quorum }

// probeWait returns how long until the probe lease lapses, as last seen;
// 0 when it is free (or the view is stale).
func (h *fleetHint) probeWait() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.seenAt.IsZero() || now.Sub(h.seenAt) > h.staleness {
		return 0
	}
	return max(h.probeAt.Sub(now), 0)
}

// refresh reads the record. A Redis error empties the view (on our own);
// a caller's cancellation leaves it as it was.
func (h *fleetHint) refresh(ctx context.Context) {
	reports, own, probeIn, err := h.fb.View(ctx)
	if err != nil && ctx.Err() != nil {
		return
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		reports, own, probeIn = 0, false, 0
	}
	h.reports, h.own, h.probeAt, h.seenAt = reports, own, now.Add(probeIn), now
	h.notifyLocked(now)
}

// probe marks one of this replica's probes as started (+1) or ended (-1).
func (h *fleetHint) probe(delta int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probing += delta
	h.notifyLocked(time.Now())
}

// cleared empties the view after a successful Clear, at once rather than
// at the next refresh.
func (h *fleetHint) cleared() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reports, h.own, h.probeAt = 0, false, time.Time{}
	h.notifyLocked(time.Now())
}

// notifyLocked passes the view to onChange if what it shows changed.
func (h *fleetHint) notifyLocked(now time.Time) {
	if h.onChange == nil {
		return
	}
	s := fleetShown{reports: h.reports, state: BreakerClosed}
	if h.seenAt.IsZero() || now.Sub(h.seenAt) > h.staleness {
		s.reports = 0
	}
	switch {
	case h.probing > 0:
		s.state = BreakerHalfOpen
	case h.othersLocked(now) >= h.quorum:
		s.state = BreakerOpen
	}
	if s != h.shown {
		h.shown = s
		h.onChange(s.reports, s.state)
	}
}

// execute runs call through the breaker and, when the hint is on, through
// the fleet's rules (see the top of this file). ctx is the caller's.
func (c *Client) execute(ctx context.Context, call func() (*Response, error)) (*Response, error) {
	h := c.fleet
	if h == nil {
		return c.cb.Execute(call)
	}
	probe, err := c.admit(ctx)
	if err != nil {
		return nil, err
	}
	if probe {
		h.probe(+1)
	}
	resp, err := c.cb.Execute(func() (*Response, error) {
		resp, err := call()
		if err != nil && !isExcluded(err) {
			// Read the record before gobreaker counts this failure, so
			// that ReadyToTrip sees reports made since the last poll: a
			// failure path only, one Redis round trip.
			h.refresh(ctx)
		}
		return resp, err
	})
	if probe {
		h.probe(-1)
		if err == nil {
			// The upstream answered: the fleet's reports are out of date.
			if h.fb.Clear(ctx) == nil {
				h.cleared()
			}
		}
	}
	c.reportIfDue(ctx)
	return resp, err
}

// admit decides what the fleet says about one call: go ahead (probe
// false), go ahead as the fleet's probe (probe true), or fail fast. An
// open breaker is left to reject the call itself.
func (c *Client) admit(ctx context.Context) (probe bool, err error) {
	h := c.fleet
	switch c.cb.State() {
	case gobreaker.StateHalfOpen:
		// This replica's trial call is the fleet's probe, if nobody
		// else's is under way.
	case gobreaker.StateClosed:
		if !h.inForce() {
			return false, nil
		}
	default:
		return false, nil
	}
	if h.probeWait() > 0 {
		// Held, as last seen: no need to ask Redis.
		return false, ErrFleetOpen
	}
	won, err := h.fb.TryProbe(ctx, h.lease)
	switch {
	case err != nil:
		return false, nil // Redis not answering: this replica's breaker decides alone
	case !won:
		return false, ErrFleetOpen
	}
	return true, nil
}

// reportIfDue reports this replica's open breaker if it opened and has not
// been reported yet, and forgets a report that is no longer due (the
// breaker has left open).
func (c *Client) reportIfDue(ctx context.Context) {
	h := c.fleet
	if !h.reportDue.Swap(false) {
		return
	}
	if c.cb.State() != gobreaker.StateOpen {
		return
	}
	// The rest of the open period, and the probe that ends it.
	ttl := max(time.Until(c.openClock.get().Add(c.openTimeout)), 0) + h.probeTime
	if err := h.fb.Report(ctx, ttl); err != nil {
		h.reportDue.Store(true) // RunFleet tries again
	}
}

// RunFleet keeps the Client's view of the fleet's breaker record current
// (every quarter of the open period, at most every 250ms) and retries a
// report that Redis did not take, until ctx is done. It returns at once
// without Options.Fleet. Run it on a goroutine of its own; Fetch works
// without it (on this replica's breaker alone, but for what the failure
// path reads).
func (c *Client) RunFleet(ctx context.Context) {
	h := c.fleet
	if h == nil {
		return
	}
	tick := time.NewTicker(h.every)
	defer tick.Stop()
	for {
		h.refresh(ctx)
		c.reportIfDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// FleetState says what the fleet's hint does to this replica: BreakerOpen
// while it is in force (at least Options.FleetQuorum other replicas report
// the upstream broken), BreakerHalfOpen while this replica's probe for the
// fleet is in flight, else BreakerClosed (always, without Options.Fleet).
func (c *Client) FleetState() BreakerState {
	h := c.fleet
	if h == nil {
		return BreakerClosed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.probing > 0:
		return BreakerHalfOpen
	case h.othersLocked(time.Now()) >= h.quorum:
		return BreakerOpen
	}
	return BreakerClosed
}
