package redistest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (e.g. the
// one waiting on a redis-server process that was never killed).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
