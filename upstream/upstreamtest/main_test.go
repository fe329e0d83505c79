package upstreamtest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: a hung
// handler that outlives its closed server would show up here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
