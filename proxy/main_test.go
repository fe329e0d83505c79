package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: a fill,
// a background refresh, an upstream or Redis connection.
//
// Three library goroutines are exempt; none holds a connection. go-redis's
// dial probe, started when a dial to a killed Redis fails, sleeps 1s between
// attempts and sees that its pool was closed only when it wakes. fasthttp's
// worker-pool janitor sleeps up to MaxIdleWorkerDuration (10s) between
// sweeps and notices a stopped server only when it wakes. fasthttp's Date-header
// clock is process-wide: started with the first server, it ticks for the
// life of the process.
//
// The shared Redis Cluster and Sentinel set are stopped before the check:
// their processes' waiters are goroutines too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(sharedSentinel.Main(sharedCluster.Main(m)),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}
