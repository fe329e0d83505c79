package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvCLIBinary names the environment variable that, when set, is the path of
// the redis-cli binary to run instead of the one found in PATH.
const EnvCLIBinary = "USERPROXY_TEST_REDIS_CLI"

const (
	// clusterNodes is 3 masters with one replica each: the smallest cluster
	// that survives losing a master.
	clusterNodes = 6
	// clusterReadyTimeout bounds creating a cluster and waiting for every
	// node to report cluster_state:ok. It takes a second or two; the margin
	// is for loaded CI hosts.
	clusterReadyTimeout = 30 * time.Second
)

// Cluster is a Redis Cluster of 3 masters and 3 replicas, each its own
// redis-server on 127.0.0.1 (see Server). Failure detection is quick
// (cluster-node-timeout 1000ms) so that failover tests need not wait long.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts a new Cluster, waits until every node reports
// cluster_state:ok and registers a t.Cleanup that kills every node.
//
// It needs redis-server (see Start) and redis-cli ($USERPROXY_TEST_REDIS_CLI
// when set, else from PATH), which creates the cluster; without either the
// test is skipped, or fails when CI is set.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin := requireBinary(tb, findBinary)
	cli := requireBinary(tb, findCLI)
	c := &Cluster{}
	tb.Cleanup(c.kill)
	if err := c.start(tb, bin, cli, tb.TempDir()); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return c
}

// start starts the nodes, each in its own directory under dir, and joins
// them into a cluster. tb is nil for a SharedCluster.
func (c *Cluster) start(tb testing.TB, bin, cli, dir string) error {
	for i := range clusterNodes {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		s := &Server{tb: tb, bin: bin, dir: d, bus: true}
		s.argv = func(port int) []string {
			return []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", d,
				"--cluster-enabled", "yes",
				"--cluster-node-timeout", "1000",
				"--cluster-config-file", filepath.Join(d, "nodes-"+strconv.Itoa(port)+".conf"),
				// A replica's first sync would otherwise wait 5s for
				// more replicas to share the transfer.
				"--repl-diskless-sync-delay", "0",
			}
		}
		c.nodes = append(c.nodes, s)
		if err := s.startOnFreePort(); err != nil {
			return fmt.Errorf("starting cluster node %d: %w", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w; output:\n%s", err, out)
	}
	return c.waitReady(ctx)
}

// waitReady waits until every node says cluster_state:ok, knows all the
// others, and every replica has its master's data link up: only then do
// clients see the same cluster whichever node they ask, and a failover has
// a synced replica to promote.
func (c *Cluster) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready after %v: %w", clusterReadyTimeout, err)
		case <-tick.C:
		}
	}
}

func (c *Cluster) ready() error {
	for _, n := range c.nodes {
		info, err := doString(n.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if got := infoField(info, "cluster_state"); got != "ok" {
			return fmt.Errorf("node %s: cluster_state:%s", n.Addr(), got)
		}
		if got := infoField(info, "cluster_known_nodes"); got != strconv.Itoa(clusterNodes) {
			return fmt.Errorf("node %s knows %s nodes, want %d", n.Addr(), got, clusterNodes)
		}
		repl, err := doString(n.Addr(), "INFO", "replication")
		if err != nil {
			return err
		}
		if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
			return fmt.Errorf("replica %s: master link not up", n.Addr())
		}
	}
	if m := len(c.Masters()); m != clusterNodes/2 {
		return fmt.Errorf("got %d masters, want %d", m, clusterNodes/2)
	}
	return nil
}

// Nodes returns every node, masters and replicas, in the order they were
// started. Killed nodes stay in the list.
func (c *Cluster) Nodes() []*Server {
	return c.nodes
}

// Addrs returns every node's "127.0.0.1:port" address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns a redis-cluster:// URL listing every node, the form
// cache.NewUniversalClient takes for a Cluster.
func (c *Cluster) URL() string {
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}

// Masters returns the nodes that are masters now, as the first node that
// answers sees it (after a failover, a former replica is among them), in
// the order of Nodes. It returns nil if no node answers.
func (c *Cluster) Masters() []*Server {
	for _, n := range c.nodes {
		nodes, err := doString(n.Addr(), "CLUSTER", "NODES")
		if err != nil {
			continue
		}
		masters := map[string]bool{}
		// <id> <ip:port@bus> <flags> <master> ...
		for line := range strings.SplitSeq(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			flags := "," + f[2] + ","
			if strings.Contains(flags, ",master,") && !strings.Contains(flags, ",fail,") {
				masters[addr] = true
			}
		}
		var out []*Server
		for _, s := range c.nodes {
			if masters[s.Addr()] {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Kill stops node with SIGKILL, as Server.Kill does: to the cluster it is
// a crashed node, which it fails over once cluster-node-timeout passes.
func (c *Cluster) Kill(node *Server) {
	node.Kill()
}

// kill kills every node.
func (c *Cluster) kill() {
	for _, n := range c.nodes {
		n.Kill()
	}
}

// SharedCluster is one Cluster for a whole test binary, for suites that
// would otherwise start a cluster per test: the first test that asks starts
// it, TestMain stops it after m.Run. Tests sharing it must keep to their
// own keys (e.g. a key prefix of their own) and must not kill, pause or
// restart its nodes; a fault test starts a Cluster of its own.
type SharedCluster struct {
	mu  sync.Mutex // protects c, dir and err
	c   *Cluster
	dir string
	err error
}

// Get returns the shared cluster, starting it on first use. Without the
// binaries it skips tb, or fails it when CI is set (see StartCluster); if
// the cluster could not be started it fails tb, and every later caller.
func (s *SharedCluster) Get(tb testing.TB) *Cluster {
	tb.Helper()
	bin := requireBinary(tb, findBinary)
	cli := requireBinary(tb, findCLI)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil && s.err == nil {
		s.c = &Cluster{}
		if s.dir, s.err = os.MkdirTemp("", "redistest-cluster-"); s.err == nil {
			s.err = s.c.start(nil, bin, cli, s.dir)
		}
	}
	if s.err != nil {
		tb.Fatalf("redistest: shared cluster: %v", s.err)
	}
	return s.c
}

// Close kills the shared cluster's nodes, if it was started, and removes
// their directories. Call it from TestMain once m.Run has returned.
func (s *SharedCluster) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		s.c.kill()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
	s.c, s.dir, s.err = nil, "", errors.New("closed")
}

// Main is m with s closed once m's tests have run, for a TestMain that
// checks for leaked goroutines afterwards (goleak.VerifyTestMain(s.Main(m)…)):
// the cluster's process waiters are goroutines too. m is a *testing.M, or
// another Main (SharedSentinel.Main) to close that too.
func (s *SharedCluster) Main(m interface{ Run() int }) interface{ Run() int } {
	return closeAfter{m, s.Close}
}

// closeAfter runs the tests, then close.
type closeAfter struct {
	m     interface{ Run() int }
	close func()
}

func (c closeAfter) Run() int {
	defer c.close()
	return c.m.Run()
}

// findCLI returns the redis-cli to run.
func findCLI() (string, error) {
	if bin := os.Getenv(EnvCLIBinary); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvCLIBinary, bin, err)
		}
		return bin, nil
	}
	bin, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", fmt.Errorf("no redis-cli in PATH and %s is not set: %w", EnvCLIBinary, err)
	}
	return bin, nil
}
