package readthrough

import (
	"context"
	"sync"
	"time"
)

// budget is the context of a store read that no request owns (the shared
// read, see Engine.read): the cache budget's deadline, and nothing else —
// no values, no cancellation but the deadline's. It exists to cost no
// allocation: context.WithTimeout makes five (the context, its timer, the
// timer's function, the cancel function, and the Done channel that go-redis
// asks for on every command), a third of what a Redis-read hit allocated.
//
// A budget is pooled, with its timer and channel: once released, it may
// serve another read with another deadline. So the store it is given to
// must not keep it past the call (the Store contract: nothing of a Get
// outlives it). A budget whose timer fired, and whose Done channel is
// closed for good, is not reused.
type budget struct {
	deadline time.Time
	done     chan struct{} // closed by timer at the deadline
	timer    *time.Timer
}

// budgets pools budgets. It holds no state of any engine: a budget
// carries nothing but a deadline.
var budgets = sync.Pool{New: func() any { return new(budget) }}

// newBudget returns a budget that ends d from now. Release it when the
// read is done.
func newBudget(d time.Duration) *budget {
	b := budgets.Get().(*budget)
	b.deadline = time.Now().Add(d)
	if b.timer == nil {
		b.done = make(chan struct{})
		b.timer = time.AfterFunc(d, func() { close(b.done) })
	} else {
		b.timer.Reset(d)
	}
	return b
}

// release stops b's timer and gives b back to the pool, unless the timer
// fired (or is firing): then its channel is closed, and b is left to the
// garbage collector.
func (b *budget) release() {
	if b.timer.Stop() {
		budgets.Put(b)
	}
}

// Deadline implements context.Context.
func (b *budget) Deadline() (time.Time, bool) { return b.deadline, true }

// Done implements context.Context: closed at the deadline.
func (b *budget) Done() <-chan struct{} { return b.done }

// Err implements context.Context: context.DeadlineExceeded once Done is
// closed, nil before.
func (b *budget) Err() error {
	select {
	case <-b.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// Value implements context.Context: a budget carries no values.
func (*budget) Value(any) any { return nil }

// String names a budget in a context's description.
func (*budget) String() string { return "readthrough.budget" }
