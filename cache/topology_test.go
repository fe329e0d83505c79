package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/testkit"
)

// redisError is an error reply as go-redis hands it back.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

func TestNodeFailed(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: context.DeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"wrapped connection refused", fmt.Errorf("reading cache entry: %w", refused), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"i/o timeout", timeout, true},
		{"EOF", io.EOF, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"CLUSTERDOWN", redisError("CLUSTERDOWN The cluster is down"), true},
		{"TRYAGAIN", redisError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"LOADING", redisError("LOADING Redis is loading the dataset in memory"), true},
		{"caller's deadline", context.DeadlineExceeded, false},
		{"caller's cancellation", fmt.Errorf("reading: %w", context.Canceled), false},
		{"MOVED", redisError("MOVED 3999 127.0.0.1:6381"), false},
		{"a script's error", redisError("ERR Error running script"), false},
		{"miss", redis.Nil, false},
		{"client closed", redis.ErrClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeFailed(tt.err); got != tt.want {
				t.Errorf("nodeFailed(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestClusterReloaderReports: failures ask for a reload at most once per
// reloadGap, MOVED is reported apart from them, and traffic reloads the
// slot map once it is reloadPeriod old.
func TestClusterReloaderReports(t *testing.T) {
	// No server: ReloadState runs in the background and fails.
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, DialTimeout: 10 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	clock := testkit.NewClock(time.Unix(1700000000, 0))
	var got []string
	r := newClusterReloader(c, func(reason string) { got = append(got, reason) }, clock.Now)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	moved := redisError("MOVED 3999 127.0.0.1:6381")
	steps := []struct {
		advance time.Duration
		err     error
		want    []string
	}{
		{0, nil, nil},
		{0, refused, []string{ReloadError}},
		{reloadGap / 2, refused, nil},                   // too soon after the last
		{0, moved, []string{ReloadMoved}},               // apart from failures
		{reloadGap / 2, refused, []string{ReloadError}}, // a gap since the first
		{0, redisError("ERR wrong number of arguments"), nil},
		{reloadPeriod - time.Millisecond, nil, nil},
		{time.Millisecond, nil, []string{ReloadPeriodic}},
		{time.Second, nil, nil},
		{0, redisError("TRYAGAIN Multiple keys request during rehashing of slot"), []string{ReloadError}},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		got = nil
		r.observe(s.err)
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("step %d (+%v, %v): reported %q, want %q", i, s.advance, s.err, got, s.want)
		}
	}
}

// TestMasterWatchReportsSwitch: a connection to another address than the
// last one is a switch; the first connection and reconnections to the same
// master are not.
func TestMasterWatchReportsSwitch(t *testing.T) {
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := listen(), listen()
	var switches int
	w := &masterWatch{report: func(reason string) {
		if reason != ReloadSwitch {
			t.Errorf("reason %q, want %q", reason, ReloadSwitch)
		}
		switches++
	}}
	var target net.Listener
	dial := w.DialHook(func(ctx context.Context, network, _ string) (net.Conn, error) {
		if target == nil {
			return nil, errors.New("connection refused")
		}
		return net.Dial(network, target.Addr().String())
	})
	for i, step := range []struct {
		to   net.Listener
		want int
	}{{a, 0}, {a, 0}, {nil, 0}, {b, 1}, {b, 1}, {a, 2}} {
		target = step.to
		if conn, err := dial(context.Background(), "tcp", "FailoverClient"); err == nil {
			conn.Close()
		}
		if switches != step.want {
			t.Errorf("dial %d: %d switches, want %d", i, switches, step.want)
		}
	}
}
