package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (e.g. an
// unclosed Redis client). The shared cluster is stopped before the check:
// its processes' waiters are goroutines too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(closeAfter{m, sharedCluster.Close})
}

// closeAfter runs the tests, then close.
type closeAfter struct {
	m     *testing.M
	close func()
}

func (c closeAfter) Run() int {
	defer c.close()
	return c.m.Run()
}
