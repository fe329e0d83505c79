package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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
	guard   func(op func() error) error // the store's circuit breaker, once per pipeline
	queue   chan *readCall
	active  atomic.Int32
	calls   sync.Pool
	maxSize int
}

// maxReadWorkers bounds the pipelines in flight at once. Two keep a
// pipeline on the wire while the previous batch's replies are handed out;
// more only shrink batches (each worker takes what is queued).
const maxReadWorkers = 2

// readCall is one lookup in a batch. done is buffered, so the worker never
// blocks on a caller that has left.
type readCall struct {
	ctx  context.Context
	keys [2]string
	vals []any
	err  error
	done chan struct{}
}

// newReadBatcher batches reads on client. Each pipeline runs through
// guard, the store's circuit breaker: one round trip is one success or one
// failure, however many lookups it carries. A late batch under load must
// not count as many failures as it had callers and open the breaker by
// itself (nil guard: none, for tests).
func newReadBatcher(client redis.UniversalClient, guard func(op func() error) error) *readBatcher {
	if guard == nil {
		guard = func(op func() error) error { return op() }
	}
	b := &readBatcher{client: client, guard: guard, queue: make(chan *readCall, 4096), maxSize: 128}
	b.calls.New = func() any { return &readCall{done: make(chan struct{}, 1)} }
	return b
}

// mget is MGET of two keys, batched with concurrent calls.
func (b *readBatcher) mget(ctx context.Context, k1, k2 string) ([]any, error) {
	if b.active.CompareAndSwap(0, 1) {
		return b.mgetAlone(ctx, k1, k2)
	}
	c := b.calls.Get().(*readCall)
	c.ctx, c.keys = ctx, [2]string{k1, k2}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		b.release(c)
		return nil, ctx.Err()
	}
	b.spawn()
	select {
	case <-c.done:
		vals, err := c.vals, c.err
		b.release(c)
		return vals, err
	case <-ctx.Done():
		// The worker still owns c and will signal done into its buffer;
		// c is left to the garbage collector rather than reused.
		return nil, ctx.Err()
	}
}

// mgetAlone sends one lookup on the caller's goroutine, holding a worker
// slot, so that lookups arriving meanwhile queue for a worker as they would
// behind a pipeline. It is bounded by the caller's own context, as every
// caller is. Giving the slot back needs no check of the queue: only one
// lookup at a time can go alone (it needs every slot free), so a lookup that
// queued meanwhile either started a worker or saw one running, and a worker
// re-checks the queue before it exits.
func (b *readBatcher) mgetAlone(ctx context.Context, k1, k2 string) (vals []any, err error) {
	defer b.active.Add(-1)
	err = b.guard(func() error {
		vals, err = b.client.MGet(ctx, k1, k2).Result()
		return err
	})
	return vals, err
}

func (b *readBatcher) release(c *readCall) {
	*c = readCall{done: c.done}
	b.calls.Put(c)
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
	cmds := make([]*redis.SliceCmd, 0, b.maxSize)
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
		var err error
		cmds, err = b.send(batch, cmds[:0])
		for i, c := range batch {
			if err != nil {
				c.vals, c.err = nil, err // refused by the breaker: nothing was sent
			} else {
				c.vals, c.err = cmds[i].Result()
			}
			c.done <- struct{}{}
			batch[i] = nil
		}
	}
}

// send runs one pipeline for batch, bounded by the latest deadline among
// the callers (each of whom gives up at its own, so one caller's longer
// budget is not cut short by another's), or by the client's own timeouts if
// a caller has none. Callers' cancellations do not reach it: the others
// still want their answers. err is set only when the breaker refused the
// pipeline; otherwise each command carries its own result.
func (b *readBatcher) send(batch []*readCall, cmds []*redis.SliceCmd) (_ []*redis.SliceCmd, err error) {
	ctx := context.Background()
	var latest time.Time
	bounded := true
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			bounded = false
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if bounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		cmds = append(cmds, pipe.MGet(ctx, c.keys[0], c.keys[1]))
	}
	ran := false
	err = b.guard(func() error {
		ran = true
		_, err := pipe.Exec(ctx) // the first failed command's error, if any
		return err
	})
	if ran {
		return cmds, nil
	}
	return cmds, err
}
