package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/userproxy/userproxy/internal/breaker"
)

// The fleet-wide breaker hint: replicas sharing a Redis tell each other
// what their breakers see, so that an upstream outage costs the fleet
// about -breaker-failures failing calls and one probe per open period,
// not that many per replica. Each replica's gobreaker stays the authority
// for itself; the hint only makes a replica more careful:
//
//   - every failed call is counted in the record (one round trip, on the
//     failure path only), and a success anywhere resets the count (a
//     second round trip, only while the count is not zero);
//   - a failure trips this replica's breaker at once when the fleet has
//     seen -breaker-failures failures in a row from at least Quorum
//     replicas (ReadyToTrip consults the count the failure just read):
//     replicas failing in step trip together, as one breaker would, while
//     one replica with a broken network path, whose count the others'
//     successes keep resetting, cannot trip them;
//   - a replica whose breaker opens reports it, for the open period plus
//     one upstream timeout (the time its half-open probe may take);
//   - while at least Quorum other replicas have live reports, a replica
//     whose own breaker is closed treats the upstream as open: Fetch fails
//     with ErrFleetOpen (so ErrBreakerOpen: stale answers or 503), except
//     for the one call that takes the fleet's probe lease;
//   - a half-open breaker's trial call must take the same lease, so the
//     fleet sends one probe per open period, not one per reporter;
//   - a probe that succeeds clears every report, the lease and the
//     count; one that fails trips the prober's breaker (even one that was
//     closed), which reports again.
//
// Redis down or slow: every operation on the record fails (within the
// Redis timeout), the view is emptied, and the replica is on its own
// breaker, exactly as without the hint.

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

// FleetView is a reading of the fleet's record (see FleetBreaker).
type FleetView = breaker.FleetView

// FleetBreaker is the record, shared by every replica, of what their
// breakers found (package cache keeps it in Redis). None of its methods
// may block past the Redis timeout, and an error means "Redis is not
// answering": the replica then acts on its own. Six methods, against the
// house habit of one to three: they are the six things the hint does to
// one record, and splitting them would only spread one record over
// several values that must share a client and a replica id.
type FleetBreaker interface {
	// View reads the record.
	View(ctx context.Context) (FleetView, error)
	// Fail counts one failed call of this replica, remembered for window,
	// and reads the record.
	Fail(ctx context.Context, window time.Duration) (FleetView, error)
	// Reset forgets the failure counts: a call succeeded.
	Reset(ctx context.Context) error
	// Report announces that this replica's breaker is open, for ttl; it
	// replaces this replica's previous report.
	Report(ctx context.Context, ttl time.Duration) error
	// TryProbe takes the fleet's probe lease for lease if nobody holds it
	// (SET NX PX), and reports whether it did.
	TryProbe(ctx context.Context, lease time.Duration) (bool, error)
	// Clear drops every report, the probe lease and the failure counts: a
	// probe found the upstream healthy.
	Clear(ctx context.Context) error
}

// fleetHint is a Client's side of the hint: its last view of the record,
// refreshed by RunFleet and after each failed call.
type fleetHint struct {
	fb        FleetBreaker
	quorum    int
	trip      int           // failures in a row that trip a breaker
	window    time.Duration // failure counts live this long: the breaker's interval
	lease     time.Duration // the probe lease: one open period
	probeTime time.Duration // a report outlives the open period by this: the upstream timeout
	every     time.Duration // how often RunFleet reads the record
	staleness time.Duration // a view older than this counts as no reports
	onChange  func(reports int, state BreakerState)

	// reportDue is set when the breaker opens (under gobreaker's lock,
	// where no I/O may happen) and cleared once Report succeeded.
	reportDue atomic.Bool

	mu      sync.Mutex // protects the fields below; orders onChange calls
	view    FleetView  // as last read; ProbeIn counts from seenAt
	seenAt  time.Time  // when view was read; zero: never
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
		trip:      int(o.Breaker.ConsecutiveFailures),
		window:    fleetWindow(o.Breaker.Interval),
		lease:     o.Breaker.OpenTimeout,
		probeTime: o.Timeout,
		every:     every,
		staleness: max(4*every, time.Second),
		onChange:  o.OnFleetChange,
	}
}

// fleetWindow is how long the fleet's shared failure count lives: the
// breaker's interval, or DefaultInterval when the breaker has none (a
// record in Redis must expire).
func fleetWindow(interval time.Duration) time.Duration {
	if interval <= 0 {
		return DefaultInterval
	}
	return interval
}

// freshLocked returns the view, or the zero view when it is too old to
// trust (Redis not answering: on our own).
func (h *fleetHint) freshLocked(now time.Time) FleetView {
	if h.seenAt.IsZero() || now.Sub(h.seenAt) > h.staleness {
		return FleetView{}
	}
	return h.view
}

// othersLocked returns how many other replicas have a live report.
func (h *fleetHint) othersLocked(now time.Time) int {
	v := h.freshLocked(now)
	if v.Own {
		return v.Reports - 1
	}
	return v.Reports
}

// inForce reports whether at least quorum other replicas have reported the
// upstream broken.
func (h *fleetHint) inForce() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.othersLocked(time.Now()) >= h.quorum
}

// tripNow reports whether a failure must trip this replica's breaker at
// once: the fleet has seen enough failures in a row, from enough
// replicas, or the failure is this replica's probe for the fleet (which
// fails as a half-open trial call does). It runs under gobreaker's lock
// (ReadyToTrip), so it must not do I/O.
func (h *fleetHint) tripNow() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.freshLocked(time.Now())
	return h.probing > 0 || (v.Failures >= h.trip && v.Failing >= h.quorum)
}

// probeWait returns how long until the probe lease lapses, as last seen;
// 0 when it is free (or the view is stale).
func (h *fleetHint) probeWait() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.freshLocked(now).ProbeIn == 0 {
		return 0
	}
	return max(h.seenAt.Add(h.view.ProbeIn).Sub(now), 0)
}

// refresh reads the record.
func (h *fleetHint) refresh(ctx context.Context) {
	v, err := h.fb.View(ctx)
	h.store(ctx, v, err)
}

// failed counts a failed call in the record and reads it.
func (h *fleetHint) failed(ctx context.Context) {
	v, err := h.fb.Fail(ctx, h.window)
	h.store(ctx, v, err)
}

// succeeded resets the fleet's failure counts if the view shows any.
func (h *fleetHint) succeeded(ctx context.Context) {
	h.mu.Lock()
	counted := h.freshLocked(time.Now()).Failures > 0
	h.mu.Unlock()
	if !counted || h.fb.Reset(ctx) != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.view.Failures, h.view.Failing = 0, 0
}

// store keeps a view just read. A Redis error empties it (on our own); a
// caller's cancellation leaves it as it was.
func (h *fleetHint) store(ctx context.Context, v FleetView, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	if err != nil {
		v = FleetView{}
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.view, h.seenAt = v, now
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
	h.view = FleetView{}
	h.notifyLocked(time.Now())
}

// stateLocked is FleetState.
func (h *fleetHint) stateLocked(now time.Time) BreakerState {
	switch {
	case h.probing > 0:
		return BreakerHalfOpen
	case h.othersLocked(now) >= h.quorum:
		return BreakerOpen
	}
	return BreakerClosed
}

// notifyLocked passes the view to onChange if what it shows changed.
func (h *fleetHint) notifyLocked(now time.Time) {
	if h.onChange == nil {
		return
	}
	s := fleetShown{reports: h.freshLocked(now).Reports, state: h.stateLocked(now)}
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
		switch {
		case err == nil && !probe: // a probe's success clears everything below
			h.succeeded(ctx)
		case err != nil && !isExcluded(err):
			// Count the failure fleet-wide before gobreaker counts it
			// here, so that ReadyToTrip sees the fleet's count as of
			// now, not as of the last poll.
			h.failed(ctx)
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
	return h.stateLocked(time.Now())
}
