package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/userproxy/userproxy/internal/breaker"

	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable is returned (wrapped) by the Redis store's operations while
// its circuit breaker is open: Redis failed repeatedly, and the store does not
// try it again until the breaker lets a trial call through. Callers treat it
// like any cache error: fail open to the upstream.
var ErrUnavailable = errors.New("cache: redis unavailable (circuit breaker open)")

// BreakerOptions configures the Redis store's circuit breaker. Zero values
// are documented defaults.
type BreakerOptions struct {
	// Failures is how many consecutive failed operations open the breaker.
	// Zero means 5: a blip of one or two timeouts does not, a dead Redis
	// does within a handful of requests.
	Failures uint32
	// OpenTimeout is how long the breaker stays open before one trial
	// operation is let through. Zero means 1s: a dead Redis then costs one
	// timeout per second per replica, and a recovered one is used again
	// within a second.
	OpenTimeout time.Duration
	// OnStateChange, if non-nil, is called on every transition (wire it to
	// metrics). It runs under the breaker's lock: it must not call the store.
	OnStateChange func(from, to BreakerState)
}

// BreakerState is the state of the circuit breaker around the store (see
// internal/breaker: its values are the gauge's, String the name /readyz and
// the logs use).
type BreakerState = breaker.State

// The breaker's states.
const (
	BreakerClosed   = breaker.Closed
	BreakerHalfOpen = breaker.HalfOpen
	BreakerOpen     = breaker.Open
)

// newStoreBreaker builds the breaker that guards Redis calls. Failures are
// errors from Redis, including timeouts; a caller's own cancellation is not
// Redis's fault and is not counted.
func newStoreBreaker(o BreakerOptions) *gobreaker.CircuitBreaker[struct{}] {
	if o.Failures == 0 {
		o.Failures = 5
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = time.Second
	}
	s := gobreaker.Settings{
		Name:        "cache",
		MaxRequests: 1,
		Timeout:     o.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.Failures },
		// A raw read that got an error reply (a redirect, mostly) is read
		// again through go-redis's MGet, whose outcome counts: counting
		// both would count a moved slot twice, and open the breaker for
		// every key in a slot migration.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) || errors.Is(err, errNotValues) },
	}
	if o.OnStateChange != nil {
		s.OnStateChange = func(_ string, from, to gobreaker.State) { o.OnStateChange(breaker.From(from), breaker.From(to)) }
	}
	return gobreaker.NewCircuitBreaker[struct{}](s)
}

// guard runs op through the breaker. While the breaker is open it returns an
// error wrapping ErrUnavailable at once, without touching Redis.
func (r *Redis) guard(op func() error) error { return guard(r.breaker, op) }

// guard runs op through cb (see Redis.guard); a nil cb runs op alone.
func guard(cb *gobreaker.CircuitBreaker[struct{}], op func() error) error {
	if cb == nil {
		return op()
	}
	_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, op() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// BreakerState reports the state of the store's circuit breaker.
func (r *Redis) BreakerState() BreakerState { return breaker.From(r.breaker.State()) }
