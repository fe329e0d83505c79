package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MasterName is the name the Sentinels of StartSentinel monitor their
// master under.
const MasterName = "mymaster"

const (
	// sentinels is the smallest number that can agree on a failover with
	// one of them gone (quorum 2).
	sentinels = 3
	// sentinelReadyTimeout bounds waiting for the Sentinels to find the
	// replica and each other, which they learn from hello messages sent
	// every 2s.
	sentinelReadyTimeout = 30 * time.Second
)

// Sentinel is a master, one replica and three Sentinels monitoring them,
// each its own redis-server on 127.0.0.1. The Sentinels call the master
// down after 1s without an answer, so a failover takes a few seconds.
type Sentinel struct {
	master, replica *Server
	sentinels       []*Server
}

// StartSentinel starts a master, its replica and three Sentinels, waits
// until the replica's link to the master is up and every Sentinel knows the
// master, the replica and the other Sentinels, and registers a t.Cleanup
// that kills them all. Without redis-server the test is skipped, or fails
// when CI is set (see Start).
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin := requireBinary(tb, findBinary)
	st := &Sentinel{}
	tb.Cleanup(st.kill)
	if err := st.start(tb, bin, tb.TempDir()); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return st
}

// start starts the servers, each in its own directory under dir, and waits
// until they are ready. tb is nil for a SharedSentinel.
func (st *Sentinel) start(tb testing.TB, bin, dir string) error {
	// newServer makes a server whose command line argv builds in its own
	// directory; nil argv is a plain server.
	newServer := func(name string, argv func(port int, dir string) []string) (*Server, error) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		s := &Server{tb: tb, bin: bin, dir: d}
		if argv != nil {
			s.argv = func(port int) []string { return argv(port, d) }
		}
		return s, nil
	}
	var err error
	if st.master, err = newServer("master", nil); err != nil {
		return err
	}
	if err := st.master.startOnFreePort(); err != nil {
		return fmt.Errorf("starting the master: %w", err)
	}
	// The replica's first sync would otherwise wait 5s for more replicas
	// to share the transfer.
	if _, err := do(st.master.Addr(), "CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		return err
	}
	st.replica, err = newServer("replica", func(port int, dir string) []string {
		return []string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--replicaof", "127.0.0.1", strconv.Itoa(st.master.port),
		}
	})
	if err != nil {
		return err
	}
	if err := st.replica.startOnFreePort(); err != nil {
		return fmt.Errorf("starting the replica: %w", err)
	}
	for i := range sentinels {
		var confErr error
		s, err := newServer("sentinel"+strconv.Itoa(i), func(port int, dir string) []string {
			// Sentinel rewrites its config file as it learns the topology,
			// so the file must be its own and writable.
			conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
			body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, dir, MasterName, st.master.port, MasterName, MasterName)
			confErr = os.WriteFile(conf, []byte(body), 0o600)
			return []string{conf, "--sentinel"}
		})
		if err != nil {
			return err
		}
		st.sentinels = append(st.sentinels, s)
		if err := s.startOnFreePort(); err != nil {
			return fmt.Errorf("starting sentinel %d: %w", i, errors.Join(confErr, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sentinelReadyTimeout)
	defer cancel()
	return st.waitReady(ctx)
}

// kill kills every server started.
func (st *Sentinel) kill() {
	for _, s := range append([]*Server{st.master, st.replica}, st.sentinels...) {
		if s != nil {
			s.Kill()
		}
	}
}

func (st *Sentinel) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := st.ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sentinel setup not ready after %v: %w", sentinelReadyTimeout, err)
		case <-tick.C:
		}
	}
}

func (st *Sentinel) ready() error {
	repl, err := doString(st.replica.Addr(), "INFO", "replication")
	if err != nil {
		return err
	}
	if got := infoField(repl, "master_link_status"); got != "up" {
		return fmt.Errorf("replica %s: master_link_status:%s", st.replica.Addr(), got)
	}
	for _, s := range st.sentinels {
		v, err := do(s.Addr(), "SENTINEL", "MASTER", MasterName)
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", s.Addr(), err)
		}
		fields, _ := v.([]any)
		m := map[string]string{}
		for i := 0; i+1 < len(fields); i += 2 {
			k, _ := fields[i].(string)
			v, _ := fields[i+1].(string)
			m[k] = v
		}
		switch {
		case m["port"] != strconv.Itoa(st.master.port):
			return fmt.Errorf("sentinel %s: master on port %q, want %d", s.Addr(), m["port"], st.master.port)
		case m["num-slaves"] != "1":
			return fmt.Errorf("sentinel %s: knows %q replicas, want 1", s.Addr(), m["num-slaves"])
		case m["num-other-sentinels"] != strconv.Itoa(sentinels-1):
			return fmt.Errorf("sentinel %s: knows %q other sentinels, want %d", s.Addr(), m["num-other-sentinels"], sentinels-1)
		case strings.Contains(m["flags"], "down"):
			return fmt.Errorf("sentinel %s: master flags %q", s.Addr(), m["flags"])
		}
	}
	return nil
}

// URL returns a redis-sentinel:// URL listing every Sentinel and naming the
// master, the form cache.NewUniversalClient takes for Sentinel.
func (st *Sentinel) URL() string {
	addrs := make([]string, len(st.sentinels))
	for i, s := range st.sentinels {
		addrs[i] = s.Addr()
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "?master=" + MasterName
}

// MasterName returns the name the Sentinels monitor the master under.
func (st *Sentinel) MasterName() string {
	return MasterName
}

// Master returns the server started as the master. After KillMaster and a
// failover, the master is Replica.
func (st *Sentinel) Master() *Server {
	return st.master
}

// Replica returns the server started as the master's replica.
func (st *Sentinel) Replica() *Server {
	return st.replica
}

// Sentinels returns the three Sentinel processes.
func (st *Sentinel) Sentinels() []*Server {
	return st.sentinels
}

// KillMaster stops the master started as such with SIGKILL: the Sentinels
// see it down after 1s and promote the replica.
func (st *Sentinel) KillMaster() {
	st.master.Kill()
}

// SharedSentinel is one Sentinel set for a whole test binary, as
// SharedCluster is one Cluster: the first test that asks starts it,
// TestMain stops it after m.Run. Tests sharing it must keep to their own
// keys and channels (e.g. a key prefix of their own) and must not kill,
// pause or restart its servers; a fault test starts a Sentinel of its own.
type SharedSentinel struct {
	mu  sync.Mutex // protects st, dir and err
	st  *Sentinel
	dir string
	err error
}

// Get returns the shared Sentinel set, starting it on first use. Without
// redis-server it skips tb, or fails it when CI is set (see Start); if the
// set could not be started it fails tb, and every later caller.
func (s *SharedSentinel) Get(tb testing.TB) *Sentinel {
	tb.Helper()
	bin := requireBinary(tb, findBinary)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil && s.err == nil {
		s.st = &Sentinel{}
		if s.dir, s.err = os.MkdirTemp("", "redistest-sentinel-"); s.err == nil {
			s.err = s.st.start(nil, bin, s.dir)
		}
	}
	if s.err != nil {
		tb.Fatalf("redistest: shared sentinel: %v", s.err)
	}
	return s.st
}

// Close kills the shared set's servers, if it was started, and removes
// their directories. Call it from TestMain once m.Run has returned.
func (s *SharedSentinel) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		s.st.kill()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
	s.st, s.dir, s.err = nil, "", errors.New("closed")
}

// Main is m with s closed once m's tests have run (see SharedCluster.Main);
// m may be another Main, to close a shared cluster too.
func (s *SharedSentinel) Main(m interface{ Run() int }) interface{ Run() int } {
	return closeAfter{m, s.Close}
}
