// Package redistest runs a private, throwaway redis-server — or a whole Redis
// Cluster (StartCluster) or Sentinel setup (StartSentinel) — for integration
// and fault tests.
//
// Every Server is its own process on its own 127.0.0.1 port with persistence
// off and its working directory in t.TempDir(); tests never touch a Redis they
// did not start (in particular not one on 127.0.0.1:6379).
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// EnvServerBinary names the environment variable that, when set, is the path of
// the redis-server binary to run instead of the one found in PATH.
const EnvServerBinary = "USERPROXY_TEST_REDIS_SERVER"

const (
	// readyTimeout bounds how long a fresh redis-server may take to answer
	// PING. It starts in a few milliseconds; the margin is for loaded CI hosts.
	readyTimeout = 10 * time.Second
	// portAttempts is how often Start retries when another process grabbed the
	// free port between our probe and redis-server binding it.
	portAttempts = 5
)

// Server is a redis-server process owned by one test. Its methods are safe for
// concurrent use. A Server is stopped by the t.Cleanup that Start registers.
type Server struct {
	tb   testing.TB // nil for a package-wide server (see SharedCluster)
	bin  string
	dir  string
	port int
	// argv is the command line after the binary for a port; nil runs a
	// plain server (see start).
	argv func(port int) []string
	// bus reserves port+10000 too, a Cluster node's bus port.
	bus bool

	mu   sync.Mutex    // protects proc and done
	proc *os.Process   // nil while killed
	done chan struct{} // closed when proc has exited
}

// Start starts a new redis-server on a free 127.0.0.1 port, waits until it
// answers PING and registers a t.Cleanup that kills it.
//
// The binary is $USERPROXY_TEST_REDIS_SERVER when set, else redis-server from
// PATH. Without a binary the test is skipped, unless the CI environment
// variable is non-empty: under CI a missing Redis fails the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := requireBinary(tb, findBinary)
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir()}
	tb.Cleanup(s.Kill)
	if err := s.startOnFreePort(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return s
}

// requireBinary returns what find finds, or skips the test, or — when the CI
// environment variable is non-empty — fails it.
func requireBinary(tb testing.TB, find func() (string, error)) string {
	tb.Helper()
	bin, err := find()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redistest: %v (CI is set, so this is a failure)", err)
		}
		tb.Skipf("redistest: %v; skipping", err)
	}
	return bin
}

// startOnFreePort picks a free port (and, for a Cluster node, a free bus
// port) and starts the server there, retrying with another port when the
// one picked was taken before the server bound it.
func (s *Server) startOnFreePort() error {
	var lastErr error
	for range portAttempts {
		port, err := freePort(s.bus)
		if err != nil {
			return err
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return nil
		}
		s.Kill()
	}
	return fmt.Errorf("starting %s: %w", s.bin, lastErr)
}

// Addr returns the server's "127.0.0.1:port" address; it stays the same
// across Kill and Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis:// URL for the server's database 0.
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Kill stops the server with SIGKILL and waits for the process to exit. Killing
// a server that is not running does nothing. Data is lost (persistence is off).
func (s *Server) Kill() {
	s.mu.Lock()
	proc, done := s.proc, s.done
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	// SIGKILL also ends a process stopped by Pause.
	_ = proc.Kill()
	<-done
}

// Restart starts the server again on the same port, with an empty data set,
// and waits until it answers PING. It kills the running process first, if any.
// It fails the test if the server cannot be started.
func (s *Server) Restart() {
	if s.tb == nil {
		panic("redistest: Restart on a shared server")
	}
	s.tb.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.Kill()
		s.tb.Fatalf("redistest: restarting on %s: %v", s.Addr(), err)
	}
}

// Pause freezes the server with SIGSTOP: connections stay open but nothing is
// answered, which is how a hung or overloaded Redis looks to a client. Resume
// undoes it. Pausing a server that is not running does nothing.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
}

// Resume continues a server frozen by Pause.
func (s *Server) Resume() {
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig os.Signal) {
	if s.tb == nil {
		panic("redistest: Pause or Resume on a shared server")
	}
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	if err := s.proc.Signal(sig); err != nil {
		s.tb.Errorf("redistest: sending %v to redis-server: %v", sig, err)
	}
}

// start launches redis-server on s.port and waits for it to become ready.
func (s *Server) start() error {
	// exec writes the output from its own goroutine while a failing start
	// reads it.
	log := &testkit.SyncBuffer{}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	}
	if s.argv != nil {
		args = s.argv(s.port)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	// This goroutine is owned by the process: it ends when the process exits,
	// which Kill (and so t.Cleanup) guarantees.
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	s.mu.Lock()
	s.proc, s.done = cmd.Process, done
	s.mu.Unlock()

	if err := waitReady(s.Addr(), cmd.Process.Pid, done); err != nil {
		return fmt.Errorf("%w; server output:\n%s", err, log.String())
	}
	return nil
}

// waitReady polls addr until the server answering there is process pid,
// the process exits (done is closed, e.g. because the port was taken), or
// readyTimeout passes. Checking the pid, not just for a PONG, matters when
// test processes run in parallel: another process's redis-server may have
// bound the port between freePort and our server's start, and it would
// answer PING too.
func waitReady(addr string, pid int, done <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		var got int
		if got, err = serverPID(addr); err == nil {
			if got == pid {
				return nil
			}
			err = fmt.Errorf("another redis-server (pid %d) answers on %s", got, addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %w", addr, readyTimeout, err)
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited before it was ready", addr)
		case <-tick.C:
		}
	}
}

// serverPID asks the server on addr for its process id (INFO server),
// without a Redis client library so that this package depends on nothing
// outside the standard library but testkit.
func serverPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	if _, err := conn.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(line, "$") {
		// e.g. "-LOADING ..." while a server is still starting.
		return 0, fmt.Errorf("unexpected reply to INFO: %q", line)
	}
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("reading INFO: %w", err)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
}

// findBinary returns the redis-server to run.
func findBinary() (string, error) {
	if bin := os.Getenv(EnvServerBinary); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvServerBinary, bin, err)
		}
		return bin, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("no redis-server in PATH and %s is not set: %w", EnvServerBinary, err)
	}
	return bin, nil
}

// maxClusterPort is the highest port a Cluster node may use: its bus port,
// port+10000, must be a valid port too.
const maxClusterPort = 65535 - 10000

// freePort returns a port that was free a moment ago; with bus, one below
// maxClusterPort whose bus port (port+10000) was free too. Another process
// may take either before redis-server binds it, which is why callers retry.
func freePort(bus bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			l.Close()
			return 0, errors.New("finding a free port: listener address is not TCP")
		}
		port := addr.Port
		if !bus {
			l.Close()
			return port, nil
		}
		free := port <= maxClusterPort && portFree(port+10000)
		l.Close()
		if free {
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: no port with a free bus port (port+10000) after 100 tries")
}

// portFree reports whether port can be listened on at 127.0.0.1.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
