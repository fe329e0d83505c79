// Package breaker holds what the two circuit breakers (the cache's and the
// upstream's) report about themselves, so that their users need not import
// gobreaker.
package breaker

import (
	"fmt"
	"time"

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

// FleetView is one replica's reading of the record the replicas sharing a
// Redis keep of the upstream's health (the fleet-wide breaker hint): kept
// by package cache, read by package upstream.
type FleetView struct {
	// Reports is how many distinct replicas have a live report that their
	// breaker opened.
	Reports int
	// Own says whether this replica is one of them.
	Own bool
	// ProbeIn is how long until the fleet's probe lease lapses; 0 when
	// nobody holds it.
	ProbeIn time.Duration
	// Failures is how many failed upstream calls the fleet has seen since
	// the last success any replica reported (within the breaker's
	// interval), and Failing how many distinct replicas they came from.
	Failures, Failing int
}
