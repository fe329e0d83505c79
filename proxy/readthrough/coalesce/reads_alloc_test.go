//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// counts hold only without it.

package coalesce

import "testing"

func TestReadsAllocations(t *testing.T) {
	var r Reads[string, [64]byte]
	fn := func() ([64]byte, error) { return [64]byte{1}, nil }
	r.Do("k", nil, fn) // fills the pool
	if got := testing.AllocsPerRun(100, func() { r.Do("k", nil, fn) }); got != 0 {
		t.Errorf("a read alone: %v allocations, want 0", got)
	}
}
