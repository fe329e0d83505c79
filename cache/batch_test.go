package cache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
)

// pipelineCounter counts the pipelines of MGETs a client sends, and the
// MGETs in them (not the handshake go-redis pipelines on each new
// connection), and the MGETs sent alone.
type pipelineCounter struct{ pipelines, cmds, alone atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "mget" {
			p.alone.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (p *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var mgets int64
		for _, c := range cmds {
			if c.Name() == "mget" {
				mgets++
			}
		}
		if mgets > 0 {
			p.pipelines.Add(1)
			p.cmds.Add(mgets)
		}
		return next(ctx, cmds)
	}
}

// TestReadBatcherBatchesAndWindsDown: the first lookup, finding nothing on
// the wire, goes out alone; lookups that queue while it and a batch are on
// the wire go out together; every caller gets its own answer, and once the
// queue is empty no worker slot is left counted (a leaked count would stop
// new workers from ever starting, and lookups from going alone).
func TestReadBatcherBatchesAndWindsDown(t *testing.T) {
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	const n = 64
	for i := range n {
		if err := client.Set(ctx, "k"+strconv.Itoa(i), strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var count pipelineCounter
	client.AddHook(&count)
	b := newReadBatcher(client, nil)
	// call is a read of k1 and k2, as the store builds one.
	call := func(k1, k2 string) *readCall {
		c := newReadCall().(*readCall)
		c.keys = [2]string{k1, k2}
		return c
	}

	// Hold Redis so the first batches cannot finish while the rest queue.
	srv.Pause()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c := call("k"+strconv.Itoa(i), "absent")
			_, err := b.mget(cctx, c)
			switch {
			case err != nil:
				errs[i] = err
			case string(c.vals[0]) != strconv.Itoa(i) || c.vals[1] != nil:
				errs[i] = errUnexpected(c.vals)
			}
		}()
	}
	testkit.WaitFor(t, 5*time.Second, "every lookup to be queued or on the wire", func() bool {
		return int(count.alone.Load()+count.cmds.Load())+len(b.queue) == n
	})
	srv.Resume()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("lookup %d: %v", i, err)
		}
	}
	// One alone (it held a slot while Redis was paused), the other 63 in
	// at most three pipelines: one on the wire beside it, then the rest
	// split between the two slots.
	if a, p, c := count.alone.Load(), count.pipelines.Load(), count.cmds.Load(); a != 1 || c != n-1 || p > maxReadWorkers+1 {
		t.Errorf("%d lookups went out as %d alone and %d commands in %d pipelines, want 1 alone and %d in at most %d", n, a, c, p, n-1, maxReadWorkers+1)
	}
	testkit.WaitFor(t, 5*time.Second, "the workers to wind down", func() bool { return b.active.Load() == 0 })

	// Nothing on the wire now: the next lookup goes alone, at once.
	pipelines := count.pipelines.Load()
	c := call("k1", "absent")
	if _, err := b.mget(ctx, c); err != nil || string(c.vals[0]) != "1" || c.vals[1] != nil {
		t.Fatalf("lone lookup: got %q, %v", c.vals, err)
	}
	if a, p := count.alone.Load(), count.pipelines.Load(); a != 2 || p != pipelines {
		t.Errorf("after a lone lookup: %d alone, %d pipelines; want 2 alone and still %d pipelines", a, p, pipelines)
	}
	if n := b.active.Load(); n != 0 {
		t.Errorf("after a lone lookup: %d worker slots held, want 0", n)
	}
}

type errUnexpected [2][]byte

func (e errUnexpected) Error() string { return "unexpected MGET reply" }
