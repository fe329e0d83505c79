package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (e.g. an
// unclosed Redis client). The shared cluster and Sentinel set are stopped
// before the check: their processes' waiters are goroutines too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(sharedSentinel.Main(sharedCluster.Main(m)))
}
