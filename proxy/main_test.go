package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: a fill,
// a background refresh, an upstream or Redis connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
