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
type requestContext struct {
	mu   sync.Mutex    // protects done, err and conn
	done chan struct{} // made by the first Done, closed by end or a hang-up
	err  error         // set with done closed
	conn net.Conn      // the request's connection, watched while someone waits
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

// cancel ends c with err, if done is still its channel.
func (c *requestContext) cancel(done chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == done && c.err == nil {
		c.err = err
		close(done)
	}
}

// end marks the request answered: c is done from now on.
func (c *requestContext) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = context.Canceled
		if c.done != nil {
			close(c.done)
		}
	}
}

// reset readies an ended c for its next request. A goroutine still
// selecting on the old channel sees it closed; the next request gets a
// fresh one, if it asks.
func (c *requestContext) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done, c.err, c.conn = nil, nil, nil
}
