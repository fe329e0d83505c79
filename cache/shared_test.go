package cache

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
)

// sharedCluster is the one Redis Cluster of this package's tests, started
// by the first test that needs it and stopped by TestMain: starting a
// cluster takes about two seconds, too long to pay per subtest. Tests keep
// apart by each using a key prefix of its own (sharedPrefix).
var sharedCluster redistest.SharedCluster

// sharedSentinel is the one Sentinel set of this package's tests, shared
// as sharedCluster is: the Sentinels take seconds to find each other.
var sharedSentinel redistest.SharedSentinel

// sharedPrefixes numbers the key prefixes handed out on sharedCluster and
// sharedSentinel.
var sharedPrefixes atomic.Int64

// sharedPrefix returns a key prefix no other store on the shared sets uses.
// The tier's channel derives from it, so invalidations stay apart too.
func sharedPrefix() string {
	return "userproxy-t" + strconv.FormatInt(sharedPrefixes.Add(1), 10)
}

// newClusterRedis is a backend on the shared Redis Cluster, with a prefix of
// its own.
func newClusterRedis(t *testing.T) backend {
	t.Helper()
	c := sharedCluster.Get(t)
	client, err := NewUniversalClient(c.URL(), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return backend{name: "redis-cluster", client: client, ttl: 300 * time.Millisecond, real: true, prefix: sharedPrefix()}
}

// clusterBackend runs a suite on Redis Cluster too; it is not in backends,
// whose tests may not keep to a prefix of their own.
var clusterBackend = struct {
	name  string
	start func(t *testing.T) backend
}{"redis-cluster", newClusterRedis}

// newSentinelRedis is a backend on the shared Sentinel set, with a prefix of
// its own.
func newSentinelRedis(t *testing.T) backend {
	t.Helper()
	st := sharedSentinel.Get(t)
	client, err := NewUniversalClient(st.URL(), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return backend{name: "redis-sentinel", client: client, ttl: 300 * time.Millisecond, real: true, prefix: sharedPrefix()}
}

// sentinelBackend runs a suite through Sentinel too; like clusterBackend,
// it is not in backends.
var sentinelBackend = struct {
	name  string
	start func(t *testing.T) backend
}{"redis-sentinel", newSentinelRedis}
