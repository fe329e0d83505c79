package upstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/userproxy/userproxy/internal/breaker"

	"github.com/sony/gobreaker/v2"
)

// ErrBreakerOpen is returned (wrapped) by Fetch when the circuit breaker
// rejects a call without contacting the upstream: the breaker is open, or it
// is half-open and its probes are already in flight. The gobreaker error
// (gobreaker.ErrOpenState or gobreaker.ErrTooManyRequests) is wrapped too.
var ErrBreakerOpen = errors.New("upstream circuit breaker open")

// errFailureStatus marks an HTTP answer (5xx, 429) that Fetch returns as a
// normal Response but the breaker must count as a failure. It never leaves
// the package.
var errFailureStatus = errors.New("upstream failure status")

// breakerName is the gobreaker Settings.Name.
const breakerName = "upstream"

// isFailureStatus reports whether an HTTP status counts against the breaker:
// server errors, and 429 because an upstream shedding load wants less of it.
// Other 4xx are the caller's problem (bad id, bad credentials) and 2xx/3xx
// are healthy answers.
func isFailureStatus(status int) bool {
	return status >= 500 || status == 429
}

// isExcluded reports whether a call result must not count at all: the
// caller gave up (its context was canceled). Counting it as a failure would
// let impatient clients open the breaker; counting it as a success would let
// them close a half-open one. Fetch marks such errors with errCallerCanceled;
// our own Timeout, or the caller's deadline, is a failure.
func isExcluded(err error) bool {
	return errors.Is(err, errCallerCanceled)
}

// errCallerCanceled marks an error caused by the caller canceling its context.
var errCallerCanceled = errors.New("caller canceled")

// canceledError carries a caller cancellation: it unwraps to both the
// original error (so errors.Is(err, context.Canceled) holds) and the
// exclusion marker, while printing only the original.
type canceledError struct{ err error }

func (e canceledError) Error() string   { return e.err.Error() }
func (e canceledError) Unwrap() []error { return []error{e.err, errCallerCanceled} }

// callerCanceled reports whether parent, the caller's context, was canceled
// (not timed out).
func callerCanceled(parent context.Context) bool {
	return errors.Is(parent.Err(), context.Canceled)
}

// openClock remembers when the breaker last opened, for RetryAfter.
// gobreaker does not expose its expiry, so this mirrors it from
// OnStateChange; the mirror is taken just after gobreaker's own clock read,
// so RetryAfter errs on the long side.
type openClock struct {
	mu       sync.Mutex // protects openedAt
	openedAt time.Time
}

func (o *openClock) set(t time.Time) {
	o.mu.Lock()
	o.openedAt = t
	o.mu.Unlock()
}

func (o *openClock) get() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.openedAt
}

// BreakerState is the state of the circuit breaker around upstream calls (see
// internal/breaker: its values are the gauge's, String the name /readyz and
// the logs use).
type BreakerState = breaker.State

// The breaker's states.
const (
	BreakerClosed   = breaker.Closed
	BreakerHalfOpen = breaker.HalfOpen
	BreakerOpen     = breaker.Open
)

// newBreaker builds the gobreaker for b, recording openings in clock and
// forwarding transitions to onChange (may be nil). With a fleet hint (may
// be nil), a failure trips the breaker at once when the fleet has seen
// enough failures in a row, and an opening is marked for reporting.
func newBreaker(b BreakerOptions, clock *openClock, fleet *fleetHint, onChange func(from, to BreakerState)) *gobreaker.CircuitBreaker[*Response] {
	trip := b.ConsecutiveFailures
	return gobreaker.NewCircuitBreaker[*Response](gobreaker.Settings{
		Name:        breakerName,
		MaxRequests: b.HalfOpenRequests,
		Interval:    b.Interval, // NoInterval: gobreaker never clears counts for an interval ≤ 0
		Timeout:     b.OpenTimeout,
		// Runs under the breaker's lock: tripNow reads local state only.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= trip || (fleet != nil && fleet.tripNow())
		},
		// Runs under the breaker's lock; see Options.OnStateChange.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				clock.set(time.Now())
				if fleet != nil {
					fleet.reportDue.Store(true) // no I/O here: execute or RunFleet reports
				}
			}
			if onChange != nil {
				onChange(breaker.From(from), breaker.From(to))
			}
		},
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded:   isExcluded,
	})
}

// State returns the breaker's current state. Asking may move an open breaker
// whose OpenTimeout has passed to half-open (and call OnStateChange).
func (c *Client) State() BreakerState {
	return breaker.From(c.cb.State())
}

// RetryAfter returns how long a rejected caller should wait before trying
// again, for a Retry-After header: 0 when the breaker is closed and the
// fleet's hint is not in force; while open, the time left until it goes
// half-open; while half-open or under the fleet's hint, the time left on
// the fleet's probe lease as last seen. Always rounded up to whole seconds
// and at least 1s (a probe in flight decides shortly).
func (c *Client) RetryAfter() time.Duration {
	// State first: it may take the breaker's lock and run OnStateChange,
	// which takes the clock's lock; never hold both here.
	switch c.cb.State() {
	case gobreaker.StateClosed:
		if c.fleet == nil || !c.fleet.inForce() {
			return 0
		}
		return ceilSecond(c.fleet.probeWait())
	case gobreaker.StateHalfOpen:
		if c.fleet == nil {
			return time.Second
		}
		return ceilSecond(c.fleet.probeWait())
	}
	left := time.Until(c.openClock.get().Add(c.openTimeout))
	return ceilSecond(left)
}

// ceilSecond rounds d up to whole seconds, with a floor of one second
// (Retry-After: 0 would invite an immediate retry storm).
func ceilSecond(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
