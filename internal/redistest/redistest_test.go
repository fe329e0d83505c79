package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// roundTrip sends one inline command on a fresh connection and returns the
// first reply line, so the test needs no Redis client library.
func roundTrip(t *testing.T, addr, cmd string, timeout time.Duration) (string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
		return "", err
	}
	return bufio.NewReader(conn).ReadString('\n')
}

func mustRoundTrip(t *testing.T, addr, cmd string) string {
	t.Helper()
	line, err := roundTrip(t, addr, cmd, 5*time.Second)
	if err != nil {
		t.Fatalf("%s on %s: %v", cmd, addr, err)
	}
	return line
}

func TestStartServesAndAddressesAreLoopback(t *testing.T) {
	s := Start(t)

	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatalf("SplitHostPort(%q): %v", s.Addr(), err)
	}
	if host != "127.0.0.1" {
		t.Errorf("got host %q, want 127.0.0.1", host)
	}
	if got, want := s.URL(), "redis://"+s.Addr()+"/0"; got != want {
		t.Errorf("got URL %q, want %q", got, want)
	}

	tests := []struct {
		cmd, want string
	}{
		{"PING", "+PONG\r\n"},
		{"SET k v", "+OK\r\n"},
		{"GET k", "$1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			if got := mustRoundTrip(t, s.Addr(), tt.cmd); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTwoServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("got the same address %s twice, want two servers", a.Addr())
	}
	mustRoundTrip(t, a.Addr(), "SET only-in-a 1")
	if got, want := mustRoundTrip(t, b.Addr(), "EXISTS only-in-a"), ":0\r\n"; got != want {
		t.Errorf("EXISTS on b: got %q, want %q", got, want)
	}
}

func TestKillAndRestartKeepTheAddress(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	mustRoundTrip(t, addr, "SET k v")

	s.Kill()
	if _, err := roundTrip(t, addr, "PING", time.Second); err == nil {
		t.Fatalf("PING after Kill: got no error, want a connection error")
	}
	s.Kill() // killing twice is harmless

	s.Restart()
	if got := s.Addr(); got != addr {
		t.Errorf("got address %s after Restart, want %s", got, addr)
	}
	if got, want := mustRoundTrip(t, addr, "PING"), "+PONG\r\n"; got != want {
		t.Errorf("PING after Restart: got %q, want %q", got, want)
	}
	// Persistence is off, so a restarted server starts empty.
	if got, want := mustRoundTrip(t, addr, "EXISTS k"), ":0\r\n"; got != want {
		t.Errorf("EXISTS k after Restart: got %q, want %q", got, want)
	}
}

func TestPauseStopsAnswersUntilResume(t *testing.T) {
	s := Start(t)
	s.Pause()
	_, err := roundTrip(t, s.Addr(), "PING", 200*time.Millisecond)
	if err == nil {
		t.Fatalf("PING while paused: got an answer, want a timeout")
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("PING while paused: got error %v, want a timeout", err)
	}
	s.Resume()
	if got, want := mustRoundTrip(t, s.Addr(), "PING"), "+PONG\r\n"; got != want {
		t.Errorf("PING after Resume: got %q, want %q", got, want)
	}
}

func TestPersistenceIsOff(t *testing.T) {
	s := Start(t)
	conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	r := bufio.NewReader(conn)
	for _, tt := range []struct{ param, want string }{
		{"save", ""},
		{"appendonly", "no"},
		{"bind", "127.0.0.1"},
	} {
		t.Run(tt.param, func(t *testing.T) {
			if _, err := fmt.Fprintf(conn, "CONFIG GET %s\r\n", tt.param); err != nil {
				t.Fatalf("write: %v", err)
			}
			// Reply: *2, $len, name, $len, value.
			var lines []string
			for range 5 {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				lines = append(lines, strings.TrimSuffix(l, "\r\n"))
			}
			if got := lines[4]; got != tt.want {
				t.Errorf("got %s=%q, want %q", tt.param, got, tt.want)
			}
		})
	}
}

// recordingTB stands in for testing.TB so that Start's Skip/Fatal decisions can
// be observed: it records the call and unwinds with a panic where the real
// methods would stop the goroutine.
type recordingTB struct {
	testing.TB // the real test, for Helper, TempDir and Cleanup
	called     string
}

type stopped struct{}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.called = "Skipf"
	panic(stopped{})
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.called = "Fatalf"
	panic(stopped{})
}

func TestStartWithoutBinary(t *testing.T) {
	tests := []struct {
		name, ci, want string
	}{
		{"skips outside CI", "", "Skipf"},
		{"fails under CI", "true", "Fatalf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvServerBinary, t.TempDir()+"/no-such-redis-server")
			t.Setenv("CI", tt.ci)
			rec := &recordingTB{TB: t}
			func() {
				defer func() {
					if r := recover(); r != nil {
						if _, ok := r.(stopped); !ok {
							panic(r)
						}
					}
				}()
				Start(rec)
			}()
			if rec.called != tt.want {
				t.Errorf("got %q called, want %q", rec.called, tt.want)
			}
		})
	}
}

// TestStartRefusesAnotherProcesssServer: when another redis-server already
// holds the port (another test process took it between freePort and our
// start), ours exits, and the one answering must not be mistaken for it.
func TestStartRefusesAnotherProcesssServer(t *testing.T) {
	other := Start(t)
	s := &Server{tb: t, bin: other.bin, dir: t.TempDir(), port: other.port}
	t.Cleanup(s.Kill)
	err := s.start()
	if err == nil {
		t.Fatalf("start on %s, where another server answers: got no error", other.Addr())
	}
	if pid, perr := serverPID(other.Addr()); perr != nil || pid != other.proc.Pid {
		t.Errorf("the other server: pid %d (%v), want it untouched as pid %d", pid, perr, other.proc.Pid)
	}
}
