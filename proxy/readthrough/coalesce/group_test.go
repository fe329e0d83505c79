package coalesce

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGroupRunsOneCallPerKey(t *testing.T) {
	var g Group[string, int]
	var calls atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	fn := func() (int, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return 42, nil
	}
	type result struct {
		v      int
		shared bool
		err    error
	}
	first := make(chan result, 1)
	go func() {
		v, shared, err := g.Do(context.Background(), "k", fn)
		first <- result{v, shared, err}
	}()
	<-started
	const n = 8
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, shared, err := g.Do(context.Background(), "k", fn)
			results[i] = result{v, shared, err}
		})
	}
	for !waiting(&g, "k", n) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if r := <-first; r.v != 42 || r.shared || r.err != nil {
		t.Errorf("first caller: got (%d, shared %v, %v), want (42, false, nil)", r.v, r.shared, r.err)
	}
	for i, r := range results {
		if r.v != 42 || !r.shared || r.err != nil {
			t.Errorf("caller %d: got (%d, shared %v, %v), want (42, true, nil)", i, r.v, r.shared, r.err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("calls: got %d, want 1", got)
	}
	if g.Running("k") {
		t.Error("Running after the call ended: got true, want false")
	}
}

// waiting reports whether n callers are parked on key's call. It peeks at
// the channel's waiters through a test hook: the count of joiners.
func waiting[K comparable, V any](g *Group[K, V], key K, n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.m[key]
	return ok && int(c.joined.Load()) == n
}

func TestGroupJoinerLeavesWithItsContext(t *testing.T) {
	var g Group[string, int]
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Do(context.Background(), "k", func() (int, error) { close(started); <-release; return 1, nil })
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, shared, err := g.Do(ctx, "k", func() (int, error) { t.Error("a joiner ran the function"); return 0, nil })
	if !shared || !errors.Is(err, context.Canceled) {
		t.Errorf("joiner with an ended context: got (shared %v, %v), want (true, context.Canceled)", shared, err)
	}
	close(release)
	<-done
}

func TestGroupPanicReleasesJoiners(t *testing.T) {
	var g Group[string, int]
	started, release := make(chan struct{}), make(chan struct{})
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		g.Do(context.Background(), "k", func() (int, error) { close(started); <-release; panic("boom") })
	}()
	<-started
	errc := make(chan error, 1)
	go func() {
		_, _, err := g.Do(context.Background(), "k", func() (int, error) { return 0, nil })
		errc <- err
	}()
	for !waiting(&g, "k", 1) {
		runtime.Gosched()
	}
	close(release)
	if err := <-errc; !errors.Is(err, ErrPanicked) {
		t.Errorf("joiner of a panicking call: got %v, want ErrPanicked", err)
	}
	if p := <-recovered; p != "boom" {
		t.Errorf("the caller that ran it: recovered %v, want the panic itself", p)
	}
	if g.Running("k") {
		t.Error("Running after a panic: got true, want false")
	}
}

// TestDoThenAnswersBeforeItsWorkIsDone: every caller has the result while
// then still runs, and a caller that comes meanwhile joins the call rather
// than making its own; once then returns, the key is free.
func TestDoThenAnswersBeforeItsWorkIsDone(t *testing.T) {
	var g Group[string, int]
	thenRunning, release := make(chan struct{}), make(chan struct{})
	thenDone := make(chan struct{})
	spawn := func(f func()) { go f() }
	calls := 0
	v, shared, err := g.DoThen(context.Background(), "k", func() (int, func(), error) {
		calls++
		return 42, func() {
			close(thenRunning)
			<-release
			close(thenDone)
		}, nil
	}, spawn)
	if v != 42 || shared || err != nil {
		t.Fatalf("leader: %v %v %v, want 42 of its own", v, shared, err)
	}
	<-thenRunning
	v, shared, err = g.DoThen(context.Background(), "k", func() (int, func(), error) {
		calls++
		return 7, nil, nil
	}, spawn)
	if v != 42 || !shared || err != nil || calls != 1 {
		t.Fatalf("caller during then: %v %v %v after %d calls, want the shared 42 after 1", v, shared, err, calls)
	}
	if !g.Running("k") {
		t.Fatal("key not in flight while then runs")
	}
	close(release)
	<-thenDone
	for g.Running("k") { // forgotten right after then returns, on its goroutine
		runtime.Gosched()
	}
	if v, _, _ := g.Do(context.Background(), "k", func() (int, error) { calls++; return 7, nil }); v != 7 || calls != 2 {
		t.Fatalf("after then: %v after %d calls, want a call of its own", v, calls)
	}
}
