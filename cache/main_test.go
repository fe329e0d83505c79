package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (e.g. an
// unclosed Redis client).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
