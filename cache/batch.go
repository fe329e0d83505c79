package cache

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// readBatcher sends the MGETs of concurrent lookups to Redis together, one
// pipeline per batch: under load a lookup's cost is mostly its own write and
// read system calls, on both sides, and a pipeline of n lookups pays them
// once. A batch forms from the lookups that arrive while the previous one is
// on the wire. A lookup that finds nothing on the wire goes out at once, on
// its caller's goroutine: there is no company to wait for, and handing it to
// a worker and back would cost two goroutine wake-ups (each a wait in the run
// queue under load: up to 0.7 ms of cold-miss p50, bench/RESULTS.md).
//
// Workers are started on demand and exit as soon as the queue is empty, so
// an idle store holds no goroutine and needs no Close. Every caller waits on
// its own context: a hung Redis costs a caller its budget, never more.
type readBatcher struct {
	client  redis.UniversalClient
	breaker *gobreaker.CircuitBreaker[struct{}] // the store's, once per pipeline; nil: none
	queue   chan *readCall
	active  atomic.Int32
	maxSize int
}

// maxReadWorkers bounds the pipelines in flight at once. Two keep a
// pipeline on the wire while the previous batch's replies are handed out;
// more only shrink batches (each worker takes what is queued).
const maxReadWorkers = 2

// newReadBatcher batches reads on client. Each pipeline runs through
// breaker, the store's circuit breaker: one round trip is one success or one
// failure, however many lookups it carries. A late batch under load must
// not count as many failures as it had callers and open the breaker by
// itself (nil breaker: none, for tests).
func newReadBatcher(client redis.UniversalClient, breaker *gobreaker.CircuitBreaker[struct{}]) *readBatcher {
	return &readBatcher{client: client, breaker: breaker, queue: make(chan *readCall, 4096), maxSize: 128}
}

// mget reads c's keys into c.vals (see readCall.take), batched with
// concurrent calls. gone reports that the caller's context ended while c
// was queued or on the wire: the worker still holds c, which the caller
// must then leave alone (not release it to its pool).
func (b *readBatcher) mget(ctx context.Context, c *readCall) (gone bool, err error) {
	if b.active.CompareAndSwap(0, 1) {
		return false, b.mgetAlone(ctx, c)
	}
	c.deadline, _ = ctx.Deadline() // read now: the worker must not touch ctx
	select {
	case b.queue <- c:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	b.spawn()
	select {
	case <-c.done:
		return false, c.err
	case <-ctx.Done():
		// The worker still owns c and will signal done into its buffer;
		// c is left to the garbage collector rather than reused.
		return true, ctx.Err()
	}
}

// mgetAlone sends one lookup on the caller's goroutine, holding a worker
// slot, so that lookups arriving meanwhile queue for a worker as they would
// behind a pipeline. It is bounded by the caller's own context, as every
// caller is. Giving the slot back needs no check of the queue: only one
// lookup at a time can go alone (it needs every slot free), so a lookup that
// queued meanwhile either started a worker or saw one running, and a worker
// re-checks the queue before it exits.
func (b *readBatcher) mgetAlone(ctx context.Context, c *readCall) error {
	defer b.active.Add(-1)
	// guard, not a func field: a closure handed to a function value
	// escapes, and would cost the read an allocation.
	return guard(b.breaker, func() error { return sendRead(ctx, b.client, c) })
}

// spawn starts a worker if fewer than maxReadWorkers run.
func (b *readBatcher) spawn() {
	for {
		n := b.active.Load()
		if n >= maxReadWorkers {
			return
		}
		if b.active.CompareAndSwap(n, n+1) {
			go b.work()
			return
		}
	}
}

// work sends batches until the queue is empty.
func (b *readBatcher) work() {
	batch := make([]*readCall, 0, b.maxSize)
	cmds := make([]*redis.RawCmd, 0, b.maxSize)
	for {
		batch = batch[:0]
	fill:
		for len(batch) < b.maxSize {
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			b.active.Add(-1)
			// A lookup queued after the drain but before the decrement saw
			// this worker as active and started none: take it on, unless
			// another worker has started meanwhile.
			if len(b.queue) == 0 {
				return
			}
			if b.active.Add(1) <= maxReadWorkers {
				continue
			}
			b.active.Add(-1)
			return
		}
		cmds = b.send(batch, cmds[:0])
		for i, c := range batch {
			c.done <- struct{}{}
			batch[i], cmds[i] = nil, nil
		}
	}
}

// send runs one pipeline for batch, bounded by the latest deadline among
// the callers (each of whom gives up at its own, so one caller's longer
// budget is not cut short by another's), or by the client's own timeouts if
// a caller has none. Callers' cancellations do not reach it: the others
// still want their answers. It sets each call's vals and err (see
// readCall.take); the breaker counts the pipeline as failed if any call
// failed, and refuses them all while open.
func (b *readBatcher) send(batch []*readCall, cmds []*redis.RawCmd) []*redis.RawCmd {
	ctx := context.Background()
	var latest time.Time
	for _, c := range batch {
		if c.deadline.IsZero() {
			latest = time.Time{}
			break
		}
		if c.deadline.After(latest) {
			latest = c.deadline
		}
	}
	if !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		cmd := c.cmd(ctx)
		_ = pipe.Process(ctx, cmd) // queues it
		cmds = append(cmds, cmd)
	}
	ran := false
	err := guard(b.breaker, func() error {
		ran = true
		_, _ = pipe.Exec(ctx) // each command's error is its own
		var first error
		for i, c := range batch {
			if c.err = c.take(cmds[i]); first == nil {
				first = c.err
			}
		}
		return first
	})
	if !ran {
		for _, c := range batch {
			c.err = err // refused by the breaker: nothing was sent
		}
	}
	return cmds
}
