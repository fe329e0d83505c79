// Package procs moves GOMAXPROCS between two values as the machine's CPUs
// fill up and empty.
//
// Why two values: a proxy that shares its CPUs with other processes (a
// sidecar beside its application, or wrk in the benchmark) wants different
// scheduler thread counts at different loads. While the CPUs are saturated
// the kernel preempts the proxy's threads for the neighbours; a preempted
// thread holds every goroutine queued on its P until it runs again, so more
// threads than CPUs (High) let the kernel interleave the proxy's work in
// smaller pieces. While the CPUs have room nothing is preempted, and the
// extra threads only add hand-offs between threads and CPUs (Low, one per
// CPU, is quicker). bench/RESULTS.md has the measurements.
//
// The signal is the share of time the CPUs this process may run on were
// busy over the last interval, from /proc/stat. It does not depend on the
// proxy's own thread count (the machine is as busy either way), so the
// choice does not feed back on itself. A saturated interval switches to
// High at once; Low comes back only after DownAfter intervals with room,
// so a load that hovers near the line does not flap.
package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

// Options configure Run. A zero field means the default its comment gives.
type Options struct {
	// Low and High are the GOMAXPROCS values with room on the CPUs and
	// with the CPUs saturated. Both are required, 1 <= Low <= High.
	Low, High int

	// Interval is how often the CPUs are sampled. Default 1s.
	Interval time.Duration

	// Up is the busy share (0-1] at or above which an interval counts as
	// saturated; Down the share below which it counts as having room.
	// Defaults 0.85 and 0.75. Between the two the current value stays.
	// Measured on 2 CPUs with wrk beside the proxy: hot hits keep the
	// machine 90-97% busy (Redis-only hits the lower end: Redis itself is
	// the limit), cold misses 40-70%.
	Up, Down float64

	// DownAfter is how many intervals in a row with room switch back to
	// Low. Default 3.
	DownAfter int

	// Sample returns cumulative busy and total CPU time of the CPUs this
	// process may run on, in any unit. Default: /proc/stat.
	Sample func() (busy, total uint64, err error)

	// Set sets GOMAXPROCS and returns the previous value. Default
	// runtime.GOMAXPROCS.
	Set func(int) int

	// OnChange, if not nil, is called after each change, with the busy
	// share of the interval that caused it.
	OnChange func(from, to int, busy float64)
}

func (o *Options) fill() error {
	if o.Low < 1 || o.High < o.Low {
		return fmt.Errorf("procs: need 1 <= Low <= High, got Low %d, High %d", o.Low, o.High)
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Up == 0 {
		o.Up = 0.85
	}
	if o.Down == 0 {
		o.Down = 0.75
	}
	if o.Down > o.Up || o.Up > 1 || o.Down < 0 {
		return fmt.Errorf("procs: need 0 <= Down <= Up <= 1, got Down %v, Up %v", o.Down, o.Up)
	}
	if o.DownAfter <= 0 {
		o.DownAfter = 3
	}
	if o.Sample == nil {
		o.Sample = SampleCPUs
	}
	if o.Set == nil {
		o.Set = runtime.GOMAXPROCS
	}
	return nil
}

// Run sets GOMAXPROCS to Low, then follows the CPUs' load until ctx ends,
// and returns nil. It returns an error without changing anything if the
// options are invalid or the first sample fails (no /proc/stat): the
// caller then keeps a fixed value. A later failed sample keeps the current
// value and the next interval tries again.
func Run(ctx context.Context, o Options) error {
	if err := o.fill(); err != nil {
		return err
	}
	prevBusy, prevTotal, err := o.Sample()
	if err != nil {
		return err
	}
	s := state{cur: o.Low}
	o.Set(o.Low)
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		busy, total, err := o.Sample()
		if err != nil {
			continue // no reading this interval
		}
		if total <= prevTotal || busy < prevBusy {
			// No time passed, or the counters went back: the set of CPUs
			// this process may run on shrank. Measure from here.
			prevBusy, prevTotal = busy, total
			continue
		}
		share := float64(busy-prevBusy) / float64(total-prevTotal)
		prevBusy, prevTotal = busy, total
		from := s.cur
		if to := s.next(share, &o); to != from {
			o.Set(to)
			if o.OnChange != nil {
				o.OnChange(from, to, share)
			}
		}
	}
}

// state is what Run remembers between intervals.
type state struct {
	cur  int // GOMAXPROCS now
	room int // intervals in a row below Down
}

// next records one interval's busy share and returns GOMAXPROCS for the
// next one.
func (s *state) next(share float64, o *Options) int {
	switch {
	case share >= o.Up:
		s.room = 0
		s.cur = o.High
	case share < o.Down:
		s.room++
		if s.room >= o.DownAfter {
			s.cur = o.Low
		}
	default:
		s.room = 0
	}
	return s.cur
}

// SampleCPUs reads /proc/stat and returns the cumulative busy and total
// time, in clock ticks, of the CPUs this process may run on (its affinity
// set; all CPUs if that cannot be read). Idle and iowait count as idle;
// everything else, steal included (time the hypervisor gave to others),
// as busy.
func SampleCPUs() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b, allowedCPUs())
}

var errNoCPULines = errors.New("procs: no cpuN lines in /proc/stat")

// parseStat sums the cpuN lines of a /proc/stat for which allowed(N) holds
// (nil allows every CPU).
func parseStat(b []byte, allowed func(int) bool) (busy, total uint64, err error) {
	found := false
	for line := range bytes.Lines(b) { // not bufio.Scanner: the intr line can pass its 64 KiB limit
		f := bytes.Fields(line)
		if len(f) < 5 || !bytes.HasPrefix(f[0], []byte("cpu")) || len(f[0]) == 3 {
			continue // not a cpuN line (the first line is the "cpu" total)
		}
		n, err := strconv.Atoi(string(f[0][3:]))
		if err != nil {
			return 0, 0, fmt.Errorf("procs: /proc/stat line %q: %w", f[0], err)
		}
		if allowed != nil && !allowed(n) {
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice]:
		// guest time is already counted in user and nice.
		for i, v := range f[1:min(len(f), 9)] {
			x, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("procs: /proc/stat %s: %w", f[0], err)
			}
			total += x
			if i != 3 && i != 4 { // idle, iowait
				busy += x
			}
		}
		found = true
	}
	if !found {
		return 0, 0, errNoCPULines
	}
	return busy, total, nil
}
