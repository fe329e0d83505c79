package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (e.g. an
// unclosed Redis client). The shared cluster is stopped before the check:
// its processes' waiters are goroutines too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(sharedCluster.Main(m))
}
