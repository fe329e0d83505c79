// Package testkit holds the small helpers several packages' tests share:
// waiting on a condition or a channel (never a bare sleep), a fake clock to
// inject instead of sleeping, a log buffer that concurrent writers may use,
// and an HTTP client that leaves no connections behind.
package testkit

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// DefaultWait is the bound Await puts on a wait: generous, since it only
// separates "later" from "never" on a loaded CI machine.
const DefaultWait = 10 * time.Second

// Await is WaitFor with DefaultWait, for the waits that need no bound of
// their own.
func Await(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	WaitFor(tb, DefaultWait, what, cond)
}

// WaitFor polls cond every 2ms until it holds, and fails tb after timeout,
// naming what it waited for. The timeout is a bound for "never happens",
// not a speed assertion: pass a generous one.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// Receive waits for a value on ch and returns it, and fails tb after
// timeout, naming what it waited for (then it returns the zero value, if
// tb.Fatalf returns at all). As with WaitFor, the timeout is a bound for
// "never happens": a stuck release shows as a failure, not a hung binary.
func Receive[T any](tb testing.TB, timeout time.Duration, what string, ch <-chan T) T {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v
	case <-t.C:
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		var zero T
		return zero
	}
}

// SyncBuffer is a bytes.Buffer that is safe for concurrent writers, such
// as a logger used by request and background goroutines. The zero value is
// ready to use.
type SyncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Go runs fn on a goroutine of its own until the test ends: its context is
// cancelled at cleanup, which then waits for fn to return, so nothing it
// started outlives the test.
func Go(tb testing.TB, fn func(ctx context.Context)) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
}
