// Package runtimetune sets the Go runtime's soft memory limit, GC percent
// and GOMAXPROCS for the proxy, from its flags and the in-process cache it
// runs with. The runtime's own environment variables (GOMEMLIMIT, GOGC,
// GOMAXPROCS), when set, win: an operator who set them meant them.
//
// The figures behind each default are in bench/RESULTS.md ("Runtime
// tuning").
package runtimetune

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
)

// Options say what the operator asked for. A zero field means the default
// its comment gives.
type Options struct {
	// MemoryLimit is the soft memory limit in bytes (-memory-limit). Zero
	// means automatic (see MemoryLimit); -1 means none.
	MemoryLimit int64

	// GCPercent is the heap growth between collections, GOGC
	// (-gc-percent). Zero means automatic (see GCPercent).
	GCPercent int

	// MaxProcs is GOMAXPROCS (-gomaxprocs). Zero means the Go runtime's
	// choice: one thread per CPU, or the container's CPU limit, which the
	// runtime follows while the process runs (Go 1.25+).
	MaxProcs int

	// InProcessBytes is the size bound of the in-process cache in use: the
	// embedded store, or the tier in front of Redis. Zero means none. The
	// automatic memory limit and GC percent follow it.
	InProcessBytes int64

	// LookupEnv reads the environment. Nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)

	// Logger receives one record per setting. Nil means slog.Default().
	Logger *slog.Logger
}

// Apply sets the memory limit, GC percent and GOMAXPROCS that o asks for,
// each unless its environment variable is set, and returns the function
// that puts the previous values back (tests run the proxy more than once
// in one process).
func Apply(o Options) (restore func()) {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	restoreMem := applyMemoryLimit(o)
	restoreGC := applyGCPercent(o)
	restoreProcs := applyMaxProcs(o)
	return func() {
		restoreProcs()
		restoreGC()
		restoreMem()
	}
}

// MemoryLimit is the soft heap limit o asks for, 0 for none. Automatic:
// twice the in-process cache bound plus 32 MiB for everything else
// (connection buffers, pools, the runtime), and never under 64 MiB. Twice,
// because the heap grows to about twice its live size between collections
// by default; with an in-process cache GCPercent lowers that, and the hot
// load stays under this limit. The floor matters: a limit near the live
// heap makes the runtime collect continuously, which starved a Redis-only
// replica with 128 connections into cache timeouts at 24 MiB.
func MemoryLimit(o Options) int64 {
	switch {
	case o.MemoryLimit < 0:
		return 0
	case o.MemoryLimit > 0:
		return o.MemoryLimit
	}
	return max(2*o.InProcessBytes+32<<20, 64<<20)
}

// GCPercent is the GOGC value o asks for. Automatic: 35 with an
// in-process cache, else the Go default, 100. With a cache, the live heap
// is mostly that long-lived cache, which GOGC=100 lets the heap outgrow by
// as much again before collecting; 35 keeps the hot load's RSS under the
// 64 MiB goal at the same throughput. Reaching that with a lower soft
// limit instead made the runtime collect back to back after a burst of
// new connections (the cache's fragmented spans count against the limit).
func GCPercent(o Options) int {
	switch {
	case o.GCPercent > 0:
		return o.GCPercent
	case o.InProcessBytes > 0:
		return 35
	}
	return 100
}

// applyMemoryLimit sets the runtime's soft memory limit, unless the
// operator set GOMEMLIMIT (the Go runtime's own knob, which wins). It
// returns the function that restores the previous limit.
func applyMemoryLimit(o Options) (restore func()) {
	if v, ok := o.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		o.Logger.Info("GOMEMLIMIT is set: -memory-limit ignored", "gomemlimit", v)
		return func() {}
	}
	limit := MemoryLimit(o)
	if limit <= 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(limit)
	o.Logger.Info("soft memory limit set", "bytes", limit)
	return func() { debug.SetMemoryLimit(prev) }
}

// applyGCPercent sets GOGC from -gc-percent, unless the operator set GOGC,
// which wins. It returns the function that restores the previous value.
func applyGCPercent(o Options) (restore func()) {
	if v, ok := o.LookupEnv("GOGC"); ok && v != "" {
		o.Logger.Info("GOGC is set: -gc-percent ignored", "gogc", v)
		return func() {}
	}
	p := GCPercent(o)
	prev := debug.SetGCPercent(p)
	o.Logger.Info("GC percent set", "percent", p)
	return func() { debug.SetGCPercent(prev) }
}

// applyMaxProcs sets GOMAXPROCS to -gomaxprocs when that is a count,
// unless the operator set GOMAXPROCS, which wins. It returns the function
// that restores the previous value. With 0 nothing is set: the runtime's
// own choice is right for a proxy (bench/RESULTS.md, "Runtime tuning"),
// and once set, the runtime no longer follows changes to the container's
// CPU limit.
func applyMaxProcs(o Options) (restore func()) {
	if v, ok := o.LookupEnv("GOMAXPROCS"); ok && v != "" {
		o.Logger.Info("GOMAXPROCS is set: -gomaxprocs ignored", "gomaxprocs", v)
		return func() {}
	}
	if o.MaxProcs <= 0 {
		o.Logger.Info("GOMAXPROCS left to the runtime", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
		return func() {}
	}
	prev := runtime.GOMAXPROCS(o.MaxProcs)
	o.Logger.Info("GOMAXPROCS set", "gomaxprocs", o.MaxProcs, "cpus", runtime.NumCPU())
	return func() { runtime.GOMAXPROCS(prev) }
}
