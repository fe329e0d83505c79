package procs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

func TestParseStat(t *testing.T) {
	// The intr line of a big machine passes bufio.Scanner's 64 KiB limit.
	intr := "intr 1" + strings.Repeat(" 0", 40000)
	stat := strings.Join([]string{
		"cpu  300 0 100 1000 20 0 5 0 0 0",
		"cpu0 100 0 50 400 10 0 2 0 0 0",
		"cpu1 200 0 50 600 10 0 3 0 7 0", // guest 7 is already in user
		"cpu12 10 1 2 3 4 5 6 7",         // older kernels: no guest columns
		intr,
		"ctxt 42",
	}, "\n")

	tests := []struct {
		name        string
		allowed     func(int) bool
		busy, total uint64
	}{
		{"all", nil, (100 + 50 + 2) + (200 + 50 + 3) + (10 + 1 + 2 + 5 + 6 + 7), (100 + 50 + 400 + 10 + 2) + (200 + 50 + 600 + 10 + 3) + 38},
		{"cpu1 only", func(n int) bool { return n == 1 }, 253, 863},
		{"cpu12 only", func(n int) bool { return n == 12 }, 31, 38},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, err := parseStat([]byte(stat), tc.allowed)
			if err != nil {
				t.Fatal(err)
			}
			if busy != tc.busy || total != tc.total {
				t.Errorf("got busy %d total %d, want %d %d", busy, total, tc.busy, tc.total)
			}
		})
	}
}

func TestParseStatRejects(t *testing.T) {
	tests := []struct{ name, stat string }{
		{"no cpu lines", "cpu  1 2 3 4 5\nctxt 1\n"},
		{"no allowed cpu", "cpu7 1 2 3 4 5\n"},
		{"bad number", "cpu0 1 2 x 4 5\n"},
		{"bad cpu name", "cpuX 1 2 3 4 5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, err := parseStat([]byte(tc.stat), func(n int) bool { return n != 7 })
			if err == nil {
				t.Errorf("got busy %d total %d and no error, want an error", busy, total)
			}
		})
	}
}

func TestSampleCPUs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	b0, t0, err := SampleCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if t0 == 0 || b0 > t0 {
		t.Fatalf("got busy %d of total %d, want 0 < total, busy <= total", b0, t0)
	}
	// Spin so the next reading has moved on.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	b1, t1, err := SampleCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if t1 < t0 || b1 < b0 {
		t.Errorf("counters went back: busy %d -> %d, total %d -> %d", b0, b1, t0, t1)
	}
}

// TestNext: one saturated interval switches to High; Low comes back after
// DownAfter intervals with room in a row; in between nothing changes and
// the count of intervals with room starts again.
func TestNext(t *testing.T) {
	o := Options{Low: 2, High: 8}
	if err := o.fill(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		shares []float64
		want   []int
	}{
		{"idle stays low", []float64{0.1, 0.5, 0.74}, []int{2, 2, 2}},
		{"saturated goes high at once", []float64{0.95}, []int{8}},
		{"exactly Up counts as saturated", []float64{0.85}, []int{8}},
		{"between the lines stays", []float64{0.80, 0.95, 0.84, 0.75}, []int{2, 8, 8, 8}},
		{"down after three with room", []float64{0.95, 0.5, 0.5, 0.5}, []int{8, 8, 8, 2}},
		{"a busy interval restarts the count", []float64{0.95, 0.5, 0.5, 0.80, 0.5, 0.5, 0.5}, []int{8, 8, 8, 8, 8, 8, 2}},
		{"a saturated one too", []float64{0.95, 0.5, 0.5, 0.95, 0.5, 0.5}, []int{8, 8, 8, 8, 8, 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := state{cur: o.Low}
			for i, share := range tc.shares {
				if got := s.next(share, &o); got != tc.want[i] {
					t.Fatalf("interval %d (share %v): got %d, want %d (all: %v -> %v)", i, share, got, tc.want[i], tc.shares, tc.want)
				}
			}
		})
	}
}

func TestOptionsRejected(t *testing.T) {
	for _, o := range []Options{
		{Low: 0, High: 4},
		{Low: 4, High: 2},
		{Low: 1, High: 2, Up: 0.5, Down: 0.7},
		{Low: 1, High: 2, Up: 1.5},
		{Low: 1, High: 2, Down: -0.1},
	} {
		sets := 0
		o.Sample = func() (uint64, uint64, error) { return 0, 1, nil }
		o.Set = func(int) int { sets++; return 0 }
		if err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v): got no error, want one", o)
		}
		if sets != 0 {
			t.Errorf("Run(%+v) set GOMAXPROCS %d times, want none", o, sets)
		}
	}
}

func TestRunWithoutReadingChangesNothing(t *testing.T) {
	sets := 0
	err := Run(context.Background(), Options{
		Low: 2, High: 8,
		Sample: func() (uint64, uint64, error) { return 0, 0, errors.New("no /proc") },
		Set:    func(int) int { sets++; return 0 },
	})
	if err == nil || sets != 0 {
		t.Errorf("got err %v and %d sets, want an error and none", err, sets)
	}
}

// TestRun drives Run through a fake /proc/stat: each sample is handed over
// by the test, so every interval's share is known, and each Set is
// reported back.
func TestRun(t *testing.T) {
	samples := make(chan [2]uint64)
	sets := make(chan int, 16)
	changes := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Low: 2, High: 8, Interval: time.Millisecond,
			Sample: func() (uint64, uint64, error) {
				select {
				case s := <-samples:
					return s[0], s[1], nil
				case <-ctx.Done():
					return 0, 0, ctx.Err()
				}
			},
			Set:      func(n int) int { sets <- n; return 0 },
			OnChange: func(from, to int, busy float64) { changes <- fmt.Sprintf("%d->%d at %.2f", from, to, busy) },
		})
	}()
	var busy, total uint64
	interval := func(b, tot uint64) { // one interval's busy and total ticks
		busy, total = busy+b, total+tot
		samples <- [2]uint64{busy, total}
	}
	expectSet := func(want int) {
		t.Helper()
		if got := testkit.Receive(t, 10*time.Second, fmt.Sprintf("GOMAXPROCS to be set to %d", want), sets); got != want {
			t.Fatalf("GOMAXPROCS set to %d, want %d", got, want)
		}
	}
	expectNoSet := func() {
		t.Helper()
		select {
		case got := <-sets:
			t.Fatalf("GOMAXPROCS set to %d, want no change", got)
		default:
		}
	}

	interval(0, 0) // the first reading
	expectSet(2)   // Run starts at Low
	interval(50, 100)
	interval(96, 100) // saturated
	expectSet(8)
	interval(40, 100)
	interval(40, 100)
	samples <- [2]uint64{busy, total} // no time passed: no reading, count unchanged
	interval(80, 100)                 // between the lines: the count starts again
	interval(40, 100)
	interval(40, 100)
	expectNoSet()
	interval(40, 100) // third with room in a row
	expectSet(2)

	// A CPU left the affinity set: the sums drop. The next intervals are
	// measured from the new sums, not ignored until they pass the old ones.
	busy, total = busy/2, total/2
	samples <- [2]uint64{busy, total}
	interval(95, 100)
	expectSet(8)

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
	close(changes)
	var got []string
	for c := range changes {
		got = append(got, c)
	}
	want := []string{"2->8 at 0.96", "8->2 at 0.40", "2->8 at 0.95"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("changes: got %v, want %v", got, want)
	}
}
