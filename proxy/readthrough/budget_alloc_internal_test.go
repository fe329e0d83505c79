//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// counts hold only without it.

package readthrough

import (
	"testing"
	"time"
)

// TestBudgetAllocations: a budget, reused, allocates nothing
// (context.WithTimeout: five allocations).
func TestBudgetAllocations(t *testing.T) {
	got := testing.AllocsPerRun(100, func() {
		b := newBudget(time.Hour)
		select { // as go-redis checks it before each command
		case <-b.Done():
		default:
		}
		b.release()
	})
	if got != 0 {
		t.Errorf("%v allocations per budget, want 0", got)
	}
}
