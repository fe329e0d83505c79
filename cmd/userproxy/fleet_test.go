package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// The fleet tests run three replicas of the binary's wiring (each its own
// run, with its own listeners) on one real Redis Cluster or Sentinel setup
// and one fake upstream, and check that they act as one: the promises of
// docs/design.md's "Scale-out" section, issue 17 item 5.

// sharedCluster is the package's one Redis Cluster for the fleet tests that
// do not kill nodes. The binary has no key prefix flag, so those tests share
// the "userproxy" prefix: each keeps to user ids of its own (fleetIDs) and
// none runs in parallel with another.
var sharedCluster redistest.SharedCluster

// TestMain stops the shared cluster once the tests have run. Run as a
// child of startProcess, it is a replica instead (see there).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(childArgsEnv); ok {
		os.Exit(runChild(strings.Split(args, "\n")))
	}
	os.Exit(sharedCluster.Main(m).Run())
}

const (
	fleetSize       = 3
	fleetKeySecret  = "fleet-key-secret-0123456789"
	fleetAdminToken = "fleet-admin-token-0123456789"
)

// fleet is fleetSize userproxy replicas sharing one Redis and one upstream.
type fleet struct {
	replicas []*started
	client   *http.Client
}

// startFleet starts fleetSize replicas on redisURL in front of upstreamURL,
// with args added to each one's flags, and waits until each one's
// in-process tier (on unless args say -l1-ttl 0) holds its lease: a tier
// flushes when its subscription is first confirmed, which must not happen
// amid a test's requests.
func startFleet(t *testing.T, redisURL, upstreamURL string, args ...string) *fleet {
	t.Helper()
	f := &fleet{client: testkit.HTTPClient(t)}
	// -redis-timeout 250ms, not the default 50ms: under -race on a loaded
	// 2-core machine a cache read may take longer, and a replica whose
	// read fails fills alone, which these tests would count against the
	// fleet. A test's own args come later and win.
	base := []string{"-upstream-url", upstreamURL, "-redis-url", redisURL,
		"-key-secret", fleetKeySecret, "-admin-token", fleetAdminToken, "-redis-timeout", "250ms"}
	tier := !slices.Contains(args, "-l1-ttl") || args[slices.Index(args, "-l1-ttl")+1] != "0"
	for range fleetSize {
		f.replicas = append(f.replicas, start(t, append(base, args...)...))
	}
	if tier {
		for i, s := range f.replicas {
			testkit.Await(t, fmt.Sprintf("replica %d's in-process tier to hold its lease", i), func() bool {
				return metricValue(t, f.client, s, "userproxy_l1_lease_valid") == 1
			})
		}
	}
	return f
}

// newFleetUpstream is the fake upstream with users enough for every test
// to keep to ids of its own (built on first use).
func newFleetUpstream(t *testing.T, latency time.Duration) *upstreamtest.Server {
	return upstreamtest.NewServer(t, upstreamtest.Options{Users: 100000, Lazy: true, Latency: latency})
}

// fleetCred is the credential every fleet test's clients send.
var fleetCred = upstreamtest.DemoCredentials()[0]

// fleetIDs returns n user ids from first on: each test takes a range of
// its own, as the shared cluster holds every test's keys.
func fleetIDs(first, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(first + i)
	}
	return ids
}

// reply is one proxy answer, as a fleet test looks at it.
type reply struct {
	status      int
	body        string
	cacheStatus string
	elapsed     time.Duration
}

func (r reply) hit() bool       { return strings.HasPrefix(r.cacheStatus, "userproxy; hit") }
func (r reply) collapsed() bool { return strings.Contains(r.cacheStatus, "; collapsed") }

// wentUpstream reports whether the answer came from an upstream call this
// request made or joined: Cache-Status names the upstream's status then.
func (r reply) wentUpstream() bool { return strings.Contains(r.cacheStatus, "fwd-status=") }

// user fetches user id through replica s. It returns an error rather than
// failing the test, so that load goroutines may call it.
func (f *fleet) user(s *started, id string) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, s.proxy+"/api/users/"+id, nil)
	if err != nil {
		return reply{}, err
	}
	req.SetBasicAuth(fleetCred.Username, fleetCred.Password)
	begin := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("reading user %s: %w", id, err)
	}
	return reply{status: resp.StatusCode, body: string(body), cacheStatus: resp.Header.Get("Cache-Status"), elapsed: time.Since(begin)}, nil
}

// mustUser is user for the test goroutine: it fails t on a transport error.
func (f *fleet) mustUser(t *testing.T, s *started, id string) reply {
	t.Helper()
	r, err := f.user(s, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// want returns the body the upstream serves for id now.
func want(t *testing.T, up *upstreamtest.Server, id string) string {
	t.Helper()
	b, ok := up.User(fleetCred.Tenant, id)
	if !ok {
		t.Fatalf("the fake upstream has no user %s", id)
	}
	return string(b)
}

// metricValue returns the value of one series on s's /metrics, written as
// the exposition format prints it (labels sorted by name), or 0 if absent.
func metricValue(t *testing.T, c *http.Client, s *started, series string) float64 {
	t.Helper()
	resp, err := c.Get(s.admin + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", s.admin, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("series %s: value %q: %v", series, v, err)
			}
			return f
		}
	}
	return 0
}

// entryKey matches the name of a cached entry, <prefix>:{<id>}:<scope>
// (cache.Redis), and not the generation or any other per-user key.
var entryKey = regexp.MustCompile(`^userproxy:\{([^}]+)\}:[0-9a-f]{32}$`)

// entryIDs returns the user ids that have an entry on node, found with
// SCAN on that node alone.
func entryIDs(t *testing.T, node *redistest.Server) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: node.Addr()})
	defer c.Close()
	var ids []string
	iter := c.Scan(context.Background(), 0, "userproxy:{*}:*", 1000).Iterator()
	for iter.Next(context.Background()) {
		if m := entryKey.FindStringSubmatch(iter.Val()); m != nil {
			ids = append(ids, m[1])
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN on %s: %v", node.Addr(), err)
	}
	return ids
}

// percentile returns the p-th percentile (0 < p ≤ 1) of d, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// concurrently runs do(i) for i in [0, n) on n goroutines released
// together, and returns once every one has returned.
func concurrently(n int, do func(i int)) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-release
			do(i)
		})
	}
	close(release)
	wg.Wait()
}
