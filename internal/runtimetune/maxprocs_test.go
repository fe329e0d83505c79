package runtimetune

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/procs"
	"github.com/userproxy/userproxy/internal/testkit"
)

// TestMaxProcs: a range from one thread per CPU to four (bounded) only when
// no CPU limit is below the CPUs; an explicit -gomaxprocs is used as is,
// and GOMAXPROCS wins.
func TestMaxProcs(t *testing.T) {
	for _, tc := range []struct {
		name              string
		o                 Options
		cpus, choice      int
		wantLow, wantHigh int
	}{
		{"no limit, 2 CPUs", Options{}, 2, 2, 2, 8},
		{"no limit, 1 CPU", Options{}, 1, 1, 1, 4},
		{"no limit, 16 CPUs: capped", Options{}, 16, 16, 16, 32},
		{"no limit, 64 CPUs: never below the CPUs", Options{}, 64, 64, 64, 64},
		{"CPU limit: the runtime's choice", Options{}, 8, 1, 0, 0},
		{"explicit", Options{MaxProcs: 3}, 8, 1, 3, 3},
	} {
		if low, high := MaxProcs(tc.o, tc.cpus, tc.choice); low != tc.wantLow || high != tc.wantHigh {
			t.Errorf("%s: MaxProcs = %d, %d, want %d, %d", tc.name, low, high, tc.wantLow, tc.wantHigh)
		}
	}

	ctx := context.Background()
	before := runtime.GOMAXPROCS(0)
	want := before + 3
	restore := applyMaxProcs(ctx, Options{MaxProcs: want, LookupEnv: noEnv, Logger: discard()})
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS while running: %d, want %d", got, want)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after restore: %d, want the previous %d", got, before)
	}
	restore = applyMaxProcs(ctx, Options{MaxProcs: want, LookupEnv: func(k string) (string, bool) { return "1", k == "GOMAXPROCS" }, Logger: discard()})
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS with the variable set: %d, want it untouched (%d)", got, before)
	}
	restore()
}

// TestMaxProcsFollowsLoad: with -gomaxprocs 0 and no CPU limit, the range
// from MaxProcs is handed to procs.Run, and restore stops it and puts the
// previous value back. The load is faked: every interval saturated.
func TestMaxProcsFollowsLoad(t *testing.T) {
	if runtime.GOMAXPROCS(0) < runtime.NumCPU() {
		t.Skip("a CPU limit applies here: the runtime's choice stands")
	}
	wantLow, wantHigh := MaxProcs(Options{}, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if wantLow == wantHigh {
		t.Skipf("%d CPUs: no range to follow", runtime.NumCPU())
	}
	// Start from High, so that finding Low proves applyMaxProcsWith set it.
	orig := runtime.GOMAXPROCS(wantHigh)
	defer runtime.GOMAXPROCS(orig)
	before := wantHigh
	var ticks uint64
	set := make(chan int, 100)
	block := make(chan struct{}) // the first sample waits: applyMaxProcsWith itself must have set Low
	restore := applyMaxProcsWith(context.Background(), Options{LookupEnv: noEnv, Logger: discard()}, procs.Options{
		Interval: time.Millisecond,
		Sample: func() (uint64, uint64, error) { // always busy
			if ticks == 0 {
				<-block
			}
			ticks += 100
			return ticks, ticks, nil
		},
		Set: func(n int) int { set <- n; return runtime.GOMAXPROCS(n) },
	})
	if got := runtime.GOMAXPROCS(0); got != wantLow {
		t.Errorf("GOMAXPROCS when applyMaxProcsWith returned: %d, want Low (%d)", got, wantLow)
	}
	close(block)
	for _, want := range []int{wantLow, wantHigh} {
		select {
		case got := <-set:
			if got != want {
				t.Fatalf("GOMAXPROCS set to %d, want %d (low %d, high %d)", got, want, wantLow, wantHigh)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("GOMAXPROCS not set to %d", want)
		}
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after restore: %d, want the previous %d", got, before)
	}
}

// TestMaxProcsWithoutLoadReadings: if the CPUs' load cannot be read (no
// /proc/stat), GOMAXPROCS is fixed at the high value, the fixed behaviour
// of before, and restore still puts the previous value back.
func TestMaxProcsWithoutLoadReadings(t *testing.T) {
	if runtime.GOMAXPROCS(0) < runtime.NumCPU() {
		t.Skip("a CPU limit applies here: the runtime's choice stands")
	}
	wantLow, wantHigh := MaxProcs(Options{}, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if wantLow == wantHigh {
		t.Skipf("%d CPUs: no range to follow", runtime.NumCPU())
	}
	before := runtime.GOMAXPROCS(0)
	restore := applyMaxProcsWith(context.Background(), Options{LookupEnv: noEnv, Logger: discard()}, procs.Options{
		Sample: func() (uint64, uint64, error) { return 0, 0, errors.New("no /proc/stat") },
	})
	testkit.WaitFor(t, 10*time.Second, "GOMAXPROCS to be fixed at the high value", func() bool {
		return runtime.GOMAXPROCS(0) == wantHigh
	})
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after restore: %d, want the previous %d", got, before)
	}
}
