package proxy

import (
	"context"
	"net"
	"sync"
	"time"
)

// requestContext is the context of one request on the fasthttp front, which
// gives none of its own (fasthttp's RequestCtx is recycled after the
// request and is done when the server begins to drain, while in-flight
// requests must be let finish). Like a net/http request's context, it is
// done when its client hangs up, or once the request has been answered;
// work that outlives the request (a fill others share, a background
// refresh) detaches from it with context.WithoutCancel.
//
// It is pooled with its request (frontRequest), so a hit allocates no
// context. Its done channel is made, and the connection watched for a
// hang-up, only when someone waits on it (a request joining a fill): a
// hit pays for neither.
//
// Because it is reused, contexts derived from it must never look at it
// after its request: it implements AfterFunc, so the context package
// registers a derived context's cancellation here (run by end or a
// hang-up, while Err is still set) instead of starting a goroutine that
// would wake up later, find the next request's state, and panic on a nil
// Err.
type requestContext struct {
	mu     sync.Mutex    // protects done, err, conn and afters
	done   chan struct{} // made by the first Done, closed by end or a hang-up
	err    error         // set with done closed
	conn   net.Conn      // the request's connection, watched while someone waits
	afters []*afterFunc  // functions to run when c is done
}

// afterFunc is one function registered with AfterFunc.
type afterFunc struct {
	f       func()
	stopped bool // guarded by the requestContext's mu
}

// hangUpPoll is how often a waited-on request's connection is checked for
// a hang-up: a client that left is noticed within this.
const hangUpPoll = 50 * time.Millisecond

// begin readies c for a request on conn.
func (c *requestContext) begin(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
}

func (c *requestContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else if c.conn != nil && canWatch(c.conn) {
			go c.watch(c.done, c.conn)
		}
	}
	return c.done
}

func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Value is nil for every key: the request's id and trace context travel in
// the engine's Request, not in the context.
func (c *requestContext) Value(any) any { return nil }

// watch checks conn for a hang-up until done is closed, and cancels c if
// its client has gone. done and conn are this request's: c may be reused
// by the time watch notices, and cancel checks that it is not.
func (c *requestContext) watch(done chan struct{}, conn net.Conn) {
	t := time.NewTicker(hangUpPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if hungUp(conn) {
				c.cancel(done, context.Canceled)
				return
			}
		}
	}
}

// AfterFunc arranges for f to run once c is done (at once, on a goroutine
// of its own, if it already is); stop unregisters it and reports whether it
// had not run. The context package uses it to cancel contexts derived from
// c (see requestContext).
func (c *requestContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := &afterFunc{f: f}
	if c.err != nil {
		a.stopped = true
		go f()
	} else {
		c.afters = append(c.afters, a)
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if a.stopped {
			return false
		}
		a.stopped = true
		return true
	}
}

// cancel ends c with err, if done is still its channel.
func (c *requestContext) cancel(done chan struct{}, err error) {
	c.mu.Lock()
	if c.done != done || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.finishLocked(err)
}

// end marks the request answered: c is done from now on.
func (c *requestContext) end() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.finishLocked(context.Canceled)
}

// finishLocked sets err, closes done if it was made, unlocks, and runs the
// registered functions: here, before end returns, so that they see Err set
// (they call it) and never the next request's state.
func (c *requestContext) finishLocked(err error) {
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	var run []func()
	for _, a := range c.afters {
		if !a.stopped {
			a.stopped = true
			run = append(run, a.f)
		}
	}
	c.afters = c.afters[:0]
	c.mu.Unlock()
	for _, f := range run {
		f()
	}
}

// reset readies an ended c for its next request. A goroutine still
// selecting on the old channel sees it closed; the next request gets a
// fresh one, if it asks.
func (c *requestContext) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done, c.err, c.conn = nil, nil, nil
	clear(c.afters[:cap(c.afters)])
	c.afters = c.afters[:0]
}
