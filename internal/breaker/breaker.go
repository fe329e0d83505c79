// Package breaker holds what the two circuit breakers (the cache's and the
// upstream's) report about themselves, so that their users need not import
// gobreaker.
package breaker

import (
	"fmt"

	"github.com/sony/gobreaker/v2"
)

// State is a circuit breaker's state. Its values are those of the
// userproxy_circuit_breaker_state gauge, so float64(s) is the gauge's
// value; String gives the name /readyz and the logs use.
type State uint8

const (
	Closed   State = 0 // calls go through
	HalfOpen State = 1 // trial calls go through; the others fail fast
	Open     State = 2 // calls fail fast
)

// String returns "closed", "half-open" or "open", as gobreaker names them.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("unknown breaker state %d", uint8(s))
}

// From translates gobreaker's state.
func From(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}
