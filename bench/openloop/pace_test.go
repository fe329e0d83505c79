package main

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestScheduleAt(t *testing.T) {
	start := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	s := schedule{start: start, rate: 6000}
	tests := []struct {
		i    int64
		want time.Duration
	}{
		{0, 0},
		{1, 166666 * time.Nanosecond},
		{3, 500 * time.Microsecond},
		{6000, time.Second},
		// Computed from i, not summed: no drift after a million requests.
		{6_000_000, 1000 * time.Second},
	}
	for _, tt := range tests {
		if got := s.at(tt.i).Sub(start); got != tt.want {
			t.Errorf("rate 6000: at(%d) = start + %v, want start + %v", tt.i, got, tt.want)
		}
	}
	if got := (schedule{start: start, rate: 1600}).at(1600).Sub(start); got != time.Second {
		t.Errorf("rate 1600: at(1600) = start + %v, want start + 1s", got)
	}
}

func TestIntended(t *testing.T) {
	due := time.Unix(100, 0)
	if got := intended(due, time.Time{}); !got.Equal(due) {
		t.Errorf("never slept: intended = %v, want the due time %v", got, due)
	}
	if got := intended(due, due.Add(-time.Millisecond)); !got.Equal(due) {
		t.Errorf("woke before due: intended = %v, want the due time", got)
	}
	if woke := due.Add(700 * time.Microsecond); !intended(due, woke).Equal(woke) {
		t.Errorf("overslept: intended = %v, want the wake-up %v", intended(due, woke), woke)
	}
}

// TestPacerSendsOnSchedule: the target takes 50 ms per answer at 1,000
// requests/s, so about 50 requests must be in flight at once. A closed-loop
// client with the 4 workers it starts with would keep 4.
func TestPacerSendsOnSchedule(t *testing.T) {
	var inFlight, most atomic.Int64
	p := &pacer{
		sched:    schedule{start: time.Now().Add(10 * time.Millisecond), rate: 1000},
		measured: 300, workers: 4, maxWorkers: 1000,
		newWorker: func() func(int64) (bool, error) {
			return func(int64) (bool, error) {
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(50 * time.Millisecond)
				inFlight.Add(-1)
				return true, nil
			}
		},
	}
	r := p.run()
	if r.OK != 300 || r.Latency.Count() != 300 {
		t.Fatalf("answered %d, recorded %d, want 300 and 300", r.OK, r.Latency.Count())
	}
	if got := most.Load(); got < 20 {
		t.Errorf("at most %d requests in flight, want about 50 (at least 20): the pacer waited for answers", got)
	}
	if r.Workers <= 4 || r.Blocked != 0 {
		t.Errorf("workers %d, blocked sends %d: want more than 4 workers started and no blocked send", r.Workers, r.Blocked)
	}
	t.Logf("most in flight %d, workers %d, p50 %v, p99 %v", most.Load(), r.Workers, r.Latency.Quantile(0.5), r.Latency.Quantile(0.99))
}

// TestPacerCountsWaitsForWorkers: with one worker and a target that takes
// 20 ms, requests due every 2 ms queue behind each other. The tenth is due
// at 18 ms and answered at 200 ms at the earliest: its latency is from its
// due time (at least 182 ms), not the 20 ms a client that measured from
// its send would report.
func TestPacerCountsWaitsForWorkers(t *testing.T) {
	p := &pacer{
		sched:    schedule{start: time.Now().Add(10 * time.Millisecond), rate: 500},
		measured: 10, workers: 1, maxWorkers: 1,
		newWorker: func() func(int64) (bool, error) {
			return func(int64) (bool, error) {
				time.Sleep(20 * time.Millisecond)
				return true, nil
			}
		},
	}
	r := p.run()
	if got := r.Latency.Max(); got < 182*time.Millisecond {
		t.Errorf("max latency %v, want at least 182ms (the queue behind the one worker)", got)
	}
	if got := r.Service.Quantile(0.5); got >= 100*time.Millisecond {
		t.Errorf("median service time %v, want about 20ms", got)
	}
	if r.Blocked < 8 {
		t.Errorf("%d blocked sends, want at least 8 of the 10", r.Blocked)
	}
}

// TestPacerWindow: the warm-up's requests are sent but not recorded, the
// window hooks run once each, around the measured requests, and answers
// are sorted into OK, other statuses and errors.
func TestPacerWindow(t *testing.T) {
	var sent atomic.Int64
	var startedAt, endedAt atomic.Int64 // sends counted when the hooks ran
	p := &pacer{
		sched:  schedule{start: time.Now().Add(10 * time.Millisecond), rate: 2000},
		warmup: 100, measured: 200, workers: 8, maxWorkers: 100,
		newWorker: func() func(int64) (bool, error) {
			return func(i int64) (bool, error) {
				sent.Add(1)
				switch {
				case i == 150:
					return false, errors.New("connection reset")
				case i%50 == 1:
					return false, nil // a 503, say
				}
				return true, nil
			}
		},
		windowStart: func() { startedAt.Store(sent.Load() + 1) },
		windowEnd:   func() { endedAt.Store(sent.Load() + 1) },
	}
	r := p.run()
	if sent.Load() != 300 {
		t.Fatalf("sent %d requests, want 300 (100 warm-up, 200 measured)", sent.Load())
	}
	if got := startedAt.Load() - 1; got > 100 {
		t.Errorf("window started after %d sends, want at most 100 (the warm-up)", got)
	}
	if endedAt.Load() == 0 {
		t.Error("windowEnd never ran")
	}
	// Measured: i in [100, 300): 150 failed; 101, 151, 201, 251 are non-200.
	if r.Scheduled != 200 || r.OK != 195 || r.Non200 != 4 || r.Errors != 1 {
		t.Errorf("scheduled %d, ok %d, non-200 %d, errors %d; want 200, 195, 4, 1", r.Scheduled, r.OK, r.Non200, r.Errors)
	}
	if r.Latency.Count() != 199 || r.FirstError != "connection reset" {
		t.Errorf("recorded %d latencies, first error %q; want 199 and the reset", r.Latency.Count(), r.FirstError)
	}
	if r.Window < 90*time.Millisecond {
		t.Errorf("window %v, want about 100ms (200 requests at 2000/s)", r.Window)
	}
	if r.InWindow < 150 || r.InWindow > 210 {
		t.Errorf("%d answers during the window, want about 200", r.InWindow)
	}
}
