package runtimetune

import (
	"context"
	"fmt"
	"runtime"

	"github.com/userproxy/userproxy/internal/procs"
)

// MaxProcs is the GOMAXPROCS range o asks for, given the CPUs this process
// may run on and the runtime's own choice, which follows a cgroup CPU
// limit. An explicit count is used as is (low = high). With 0 and no limit
// below the CPUs, one thread per CPU while the CPUs have room and four per
// CPU, at most 32 (never fewer than the CPUs), while they are saturated
// (package internal/procs moves between the two); under a limit, 0, 0: the
// runtime's choice stands.
//
// A sidecar shares its CPUs with the application beside it. While they are
// saturated, a scheduler thread the kernel preempts for another process
// holds every goroutine queued on it until it runs again; more threads
// than CPUs let the kernel interleave the proxy's work with the
// neighbour's in smaller pieces. While the CPUs have room the extra
// threads only add hand-offs between threads and CPUs. Under a CPU quota
// they would spend it in bursts and get the container throttled for the
// rest of each period, so the runtime's choice stands there.
func MaxProcs(o Options, cpus, runtimeChoice int) (low, high int) {
	switch {
	case o.MaxProcs > 0:
		return o.MaxProcs, o.MaxProcs
	case runtimeChoice < cpus:
		return 0, 0
	}
	return cpus, max(cpus, min(4*cpus, 32))
}

// applyMaxProcs sets GOMAXPROCS from -gomaxprocs, unless the operator set
// GOMAXPROCS, which wins; with a range (see MaxProcs) it follows the CPUs'
// load until ctx ends. It returns the function that stops that and
// restores the previous value. Once set, the runtime no longer follows
// changes to the container's CPU limit while the process runs (Go 1.25's
// automatic update); a limit set at start is still honoured.
func applyMaxProcs(ctx context.Context, o Options) (restore func()) {
	return applyMaxProcsWith(ctx, o, procs.Options{})
}

// applyMaxProcsWith is applyMaxProcs with the sampler's options, which
// tests fake.
func applyMaxProcsWith(ctx context.Context, o Options, popts procs.Options) (restore func()) {
	log := o.Logger
	if v, ok := o.LookupEnv("GOMAXPROCS"); ok && v != "" {
		log.Info("GOMAXPROCS is set: -gomaxprocs ignored", "gomaxprocs", v)
		return func() {}
	}
	low, high := MaxProcs(o, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	switch {
	case high == 0:
		log.Info("GOMAXPROCS left to the runtime: a CPU limit applies", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
		return func() {}
	case low == high:
		prev := runtime.GOMAXPROCS(high)
		log.Info("GOMAXPROCS set", "gomaxprocs", high, "cpus", runtime.NumCPU())
		return func() { runtime.GOMAXPROCS(prev) }
	}
	// Low from the start, not once the goroutine below runs: what is sized
	// from GOMAXPROCS while the proxy is wired (go-redis's default pool, 10
	// connections per thread) must not depend on that race.
	prev := runtime.GOMAXPROCS(low)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	popts.Low, popts.High = low, high
	popts.OnChange = func(from, to int, busy float64) {
		log.Info("GOMAXPROCS changed with the CPUs' load", "from", from, "to", to, "cpu_busy", fmt.Sprintf("%.2f", busy))
	}
	go func() {
		defer close(done)
		log.Info("GOMAXPROCS follows the CPUs' load", "low", low, "high", high, "cpus", runtime.NumCPU())
		if err := procs.Run(ctx, popts); err != nil {
			runtime.GOMAXPROCS(high)
			log.Warn("cannot read the CPUs' load: GOMAXPROCS fixed", "gomaxprocs", high, "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		runtime.GOMAXPROCS(prev)
	}
}
