package runtimetune

import (
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
)

const mib = 1 << 20

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func noEnv(string) (string, bool) { return "", false }

// TestMemoryLimit: the automatic soft limit follows the in-process cache
// bound in use (cmd/userproxy's TestInProcessBytes: the embedded store's
// bound without Redis, the tier's with it, 0 without a tier), and -1 or
// GOMEMLIMIT leave the runtime alone.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want int64
	}{
		{"embedded store", Options{InProcessBytes: 64 * mib}, 2*64*mib + 32*mib},
		{"redis with a large tier", Options{InProcessBytes: 32 * mib}, 2*32*mib + 32*mib},
		{"redis with the default tier: the floor", Options{InProcessBytes: 16 * mib}, 64 * mib},
		{"redis without tier: the floor", Options{}, 64 * mib},
		{"explicit", Options{MemoryLimit: 100 * mib, InProcessBytes: 64 * mib}, 100 * mib},
		{"none", Options{MemoryLimit: -1, InProcessBytes: 64 * mib}, 0},
	} {
		if got := MemoryLimit(tc.o); got != tc.want {
			t.Errorf("%s: MemoryLimit = %d, want %d", tc.name, got, tc.want)
		}
	}

	o := Options{MemoryLimit: 100 * mib, LookupEnv: noEnv, Logger: discard()}
	before := debug.SetMemoryLimit(-1) // reads without changing
	restore := applyMemoryLimit(o)
	if got := debug.SetMemoryLimit(-1); got != 100*mib {
		t.Errorf("limit while running: %d, want %d", got, 100*mib)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after restore: %d, want the previous %d", got, before)
	}
	o.LookupEnv = func(k string) (string, bool) { return "200MiB", k == "GOMEMLIMIT" }
	restore = applyMemoryLimit(o)
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit with GOMEMLIMIT set: %d, want it untouched (%d)", got, before)
	}
	restore()
}

// TestGCPercent: GOGC is lowered only when an in-process cache holds most of
// the heap, an explicit -gc-percent is used as is, and GOGC wins.
func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want int
	}{
		{"embedded store", Options{InProcessBytes: 64 * mib}, 35},
		{"redis with the tier", Options{InProcessBytes: 16 * mib}, 35},
		{"redis without tier", Options{}, 100},
		{"explicit", Options{GCPercent: 80, InProcessBytes: 16 * mib}, 80},
	} {
		if got := GCPercent(tc.o); got != tc.want {
			t.Errorf("%s: GCPercent = %d, want %d", tc.name, got, tc.want)
		}
	}

	before := debug.SetGCPercent(100)
	debug.SetGCPercent(before)
	o := Options{GCPercent: 70, LookupEnv: noEnv, Logger: discard()}
	restore := applyGCPercent(o)
	if got := debug.SetGCPercent(70); got != 70 {
		t.Errorf("GC percent while running: %d, want 70", got)
	}
	restore()
	if got := debug.SetGCPercent(before); got != before {
		t.Errorf("GC percent after restore: %d, want the previous %d", got, before)
	}
	o.LookupEnv = func(k string) (string, bool) { return "200", k == "GOGC" }
	restore = applyGCPercent(o)
	if got := debug.SetGCPercent(before); got != before {
		t.Errorf("GC percent with GOGC set: %d, want it untouched (%d)", got, before)
	}
	restore()
}

// TestApplyRestoresEverything: Apply sets all three, and its restore puts
// every previous value back.
func TestApplyRestoresEverything(t *testing.T) {
	memBefore := debug.SetMemoryLimit(-1)
	gcBefore := debug.SetGCPercent(100)
	debug.SetGCPercent(gcBefore)
	procsBefore := runtime.GOMAXPROCS(0)
	restore := Apply(Options{MemoryLimit: 100 * mib, GCPercent: 70, MaxProcs: procsBefore + 3, LookupEnv: noEnv, Logger: discard()})
	if got := debug.SetMemoryLimit(-1); got != 100*mib {
		t.Errorf("limit while running: %d, want %d", got, 100*mib)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != memBefore {
		t.Errorf("limit after restore: %d, want the previous %d", got, memBefore)
	}
	if got := debug.SetGCPercent(gcBefore); got != gcBefore {
		t.Errorf("GC percent after restore: %d, want the previous %d", got, gcBefore)
	}
	if got := runtime.GOMAXPROCS(0); got != procsBefore {
		t.Errorf("GOMAXPROCS after restore: %d, want the previous %d", got, procsBefore)
	}
}

// TestMaxProcs: an explicit -gomaxprocs is used as is, 0 leaves the
// runtime's choice alone, and GOMAXPROCS wins.
func TestMaxProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	want := before + 3
	restore := applyMaxProcs(Options{MaxProcs: want, LookupEnv: noEnv, Logger: discard()})
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS while running: %d, want %d", got, want)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after restore: %d, want the previous %d", got, before)
	}
	restore = applyMaxProcs(Options{MaxProcs: want, LookupEnv: func(k string) (string, bool) { return "1", k == "GOMAXPROCS" }, Logger: discard()})
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS with the variable set: %d, want it untouched (%d)", got, before)
	}
	restore()
	restore = applyMaxProcs(Options{LookupEnv: noEnv, Logger: discard()})
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS with -gomaxprocs 0: %d, want the runtime's %d", got, before)
	}
	restore()
}
