package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRequestContextDerivedAcrossReuse: a context derived from a pooled
// request context is cancelled when the request ends, and a later reuse of
// the request context can neither cancel it again nor make the context
// package find a nil Err (its "missing cancel error" panic).
func TestRequestContextDerivedAcrossReuse(t *testing.T) {
	var rc requestContext
	for range 2000 {
		rc.begin(nil)
		child, cancel := context.WithTimeout(&rc, time.Hour)
		select {
		case <-child.Done():
			t.Fatal("derived context done before its request ended")
		default:
		}
		rc.end()
		if !errors.Is(child.Err(), context.Canceled) {
			t.Fatalf("derived context after the request ended: Err %v, want Canceled", child.Err())
		}
		rc.reset() // the next request reuses rc at once
		cancel()
		if rc.Err() != nil {
			t.Fatalf("reused request context: Err %v, want nil", rc.Err())
		}
	}
	// A derived context whose own cancel comes first is unregistered.
	rc.begin(nil)
	child, cancel := context.WithCancel(&rc)
	cancel()
	if n := len(rc.afters); n != 1 || !rc.afters[0].stopped {
		t.Fatalf("after the child's cancel: %d registrations, stopped %v; want one, stopped", n, n == 1 && rc.afters[0].stopped)
	}
	rc.end()
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child: %v", child.Err())
	}
	rc.reset()
}
