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
// apart by each using a key prefix of its own (clusterPrefix).
var sharedCluster redistest.SharedCluster

// clusterPrefixes numbers the key prefixes handed out on sharedCluster.
var clusterPrefixes atomic.Int64

// clusterPrefix returns a key prefix no other store on sharedCluster uses.
// The tier's channel derives from it, so invalidations stay apart too.
func clusterPrefix() string {
	return "userproxy-t" + strconv.FormatInt(clusterPrefixes.Add(1), 10)
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
	return backend{name: "redis-cluster", client: client, ttl: 300 * time.Millisecond, real: true, prefix: clusterPrefix()}
}

// clusterBackend runs a suite on Redis Cluster too; it is not in backends,
// whose tests may not keep to a prefix of their own.
var clusterBackend = struct {
	name  string
	start func(t *testing.T) backend
}{"redis-cluster", newClusterRedis}
