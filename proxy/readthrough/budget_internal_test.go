package readthrough

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBudgetEndsAtItsDeadline: a budget is a context that ends at its
// deadline, with context.DeadlineExceeded, as context.WithTimeout's does.
func TestBudgetEndsAtItsDeadline(t *testing.T) {
	start := time.Now()
	b := newBudget(20 * time.Millisecond)
	d, ok := b.Deadline()
	if !ok || d.Before(start.Add(20*time.Millisecond)) || d.After(time.Now().Add(20*time.Millisecond)) {
		t.Errorf("deadline %v (ok %v), want 20ms after the call", d.Sub(start), ok)
	}
	if err := b.Err(); err != nil {
		t.Errorf("before the deadline: Err() = %v, want nil", err)
	}
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed 5s after a 20ms deadline")
	}
	if err := b.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after the deadline: Err() = %v, want %v", err, context.DeadlineExceeded)
	}
	if v := b.Value("key"); v != nil {
		t.Errorf("Value = %v, want nil", v)
	}
	b.release()
}

// TestBudgetReuse: a released budget may serve again, with its new
// deadline; one that ended never does (its Done is closed for good).
func TestBudgetReuse(t *testing.T) {
	ended := newBudget(time.Millisecond)
	<-ended.Done()
	ended.release()
	for range 100 { // sync.Pool may hand out anything it holds: look often
		b := newBudget(time.Hour)
		if b == ended {
			t.Fatal("a budget whose deadline passed was handed out again")
		}
		if err := b.Err(); err != nil {
			t.Fatalf("a new budget: Err() = %v, want nil", err)
		}
		b.release()
	}

	// A released budget fires at its new deadline, not at its old one
	// (an hour away): its timer was stopped and reset.
	b := newBudget(time.Hour)
	b.release()
	b = newBudget(10 * time.Millisecond)
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a reused budget's Done not closed 5s after a 10ms deadline")
	}
	b.release()
}
