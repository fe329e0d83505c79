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
// connection).
type pipelineCounter struct{ pipelines, cmds atomic.Int64 }

func (*pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
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

// TestReadBatcherBatchesAndWindsDown: lookups that queue while a batch is
// on the wire go out together, every caller gets its own answer, and once
// the queue is empty no worker is left counted (a leaked count would stop
// new workers from ever starting).
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
			vals, err := b.mget(cctx, "k"+strconv.Itoa(i), "absent")
			switch {
			case err != nil:
				errs[i] = err
			case len(vals) != 2 || vals[0] != strconv.Itoa(i) || vals[1] != nil:
				errs[i] = errUnexpected(vals)
			}
		}()
	}
	testkit.WaitFor(t, 5*time.Second, "every lookup to be queued or on the wire", func() bool {
		return int(count.cmds.Load())+len(b.queue) == n
	})
	srv.Resume()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("lookup %d: %v", i, err)
		}
	}
	if p, c := count.pipelines.Load(), count.cmds.Load(); c != n || p > maxReadWorkers+1 {
		t.Errorf("%d lookups went out as %d commands in %d pipelines, want %d in at most %d", n, c, p, n, maxReadWorkers+1)
	}
	testkit.WaitFor(t, 5*time.Second, "the workers to wind down", func() bool { return b.active.Load() == 0 })
}

type errUnexpected []any

func (e errUnexpected) Error() string { return "unexpected MGET reply" }
