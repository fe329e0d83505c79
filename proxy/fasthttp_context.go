package proxy

import (
	"context"
	"sync"
	"time"
)

// requestContext is the context of one request on the fasthttp front, which
// gives none of its own (fasthttp's RequestCtx is recycled after the
// request and is done when the server begins to drain, while in-flight
// requests must be let finish). It is done once the request has been
// answered, like a net/http request's context; work that outlives the
// request (a fill others share, a background refresh) detaches from it
// with context.WithoutCancel.
//
// It is pooled with its request (frontRequest), so a hit allocates no
// context; its done channel is made only when someone waits on it (a
// request joining a fill).
type requestContext struct {
	mu   sync.Mutex    // protects done and err
	done chan struct{} // made by the first Done, closed by end
	err  error         // set by end
}

func (c *requestContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
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
	c.done, c.err = nil, nil
}
