package testkit

import (
	"sync"
	"testing"
	"time"
)

func TestClockMovesOnlyWhenAdvanced(t *testing.T) {
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("got %v, want the start %v", got, start)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Errorf("after Advance(90s): got %v, want %v", got, want)
	}
	var zero Clock
	if got := zero.Now(); !got.IsZero() {
		t.Errorf("zero Clock: got %v, want the zero time", got)
	}
}

func TestClockConcurrentUse(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c.Advance(time.Second)
			_ = c.Now()
		})
	}
	wg.Wait()
	if got, want := c.Now(), time.Unix(8, 0); !got.Equal(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
