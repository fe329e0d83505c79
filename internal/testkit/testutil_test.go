package testkit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	WaitFor(t, 10*time.Second, "three increments", func() bool { return n.Load() == 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("after WaitFor: got %d, want 3", got)
	}
}

// failRecorder records Fatalf instead of stopping the test.
type failRecorder struct {
	testing.TB
	msg string
}

func (f *failRecorder) Helper() {}
func (f *failRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestWaitForFailsAfterTheTimeout(t *testing.T) {
	f := &failRecorder{TB: t}
	calls := 0
	WaitFor(f, 10*time.Millisecond, "something that never happens", func() bool {
		calls++
		return f.msg != "" // stop polling once Fatalf was called
	})
	if f.msg == "" || calls < 2 {
		t.Errorf("got message %q after %d polls, want a timeout failure", f.msg, calls)
	}
}

func TestReceiveReturnsTheValue(t *testing.T) {
	ch := make(chan string, 1)
	go func() { ch <- "sent" }()
	if got := Receive(t, 10*time.Second, "the value", ch); got != "sent" {
		t.Errorf("got %q, want %q", got, "sent")
	}
}

func TestReceiveFailsAfterTheTimeout(t *testing.T) {
	f := &failRecorder{TB: t}
	got := Receive(f, 10*time.Millisecond, "a value never sent", make(chan int))
	if f.msg == "" || got != 0 {
		t.Errorf("got message %q and value %d, want a timeout failure and 0", f.msg, got)
	}
	if !strings.Contains(f.msg, "a value never sent") {
		t.Errorf("got message %q, want it to name what it waited for", f.msg)
	}
}

func TestSyncBufferConcurrentWriters(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { b.Write([]byte("ab")) })
	}
	wg.Wait()
	if got := len(b.String()); got != 16 {
		t.Errorf("length: got %d, want 16", got)
	}
}

func TestGoStopsAtCleanup(t *testing.T) {
	stopped := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		Go(t, func(ctx context.Context) { <-ctx.Done(); close(stopped) })
	})
	select {
	case <-stopped:
	default:
		t.Fatal("fn still running after the test's cleanup, want it stopped")
	}
}
