package testkit

import (
	"sync"
	"time"
)

// Clock is a fake clock for code that takes a now func() time.Time: it
// stands still until Advance moves it, so a test decides when time passes
// instead of sleeping. Safe for concurrent use. The zero value stands at
// the zero time; NewClock starts one at a chosen instant.
type Clock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

// NewClock returns a Clock standing at start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time; pass the method value (clock.Now) where a
// now func is wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (back, if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
