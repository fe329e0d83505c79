package capacity

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireMeasure skips t unless USERPROXY_BENCH_CAPACITY is set.
func requireMeasure(t *testing.T) {
	t.Helper()
	if os.Getenv("USERPROXY_BENCH_CAPACITY") == "" {
		t.Skip("set USERPROXY_BENCH_CAPACITY=1 to measure")
	}
}

// infoFields parses an INFO reply into its name:value fields.
func infoFields(info string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, val, ok := strings.Cut(line, ":"); ok {
			out[name] = val
		}
	}
	return out
}

// commandCalls returns the calls of every command in an INFO commandstats
// reply ("cmdstat_get:calls=3,usec=…"), by command name ("get").
func commandCalls(info string) (map[string]int64, error) {
	out := map[string]int64{}
	for name, val := range infoFields(info) {
		cmd, ok := strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(val, ",")
		n, ok := strings.CutPrefix(calls, "calls=")
		if !ok {
			return nil, fmt.Errorf("%s: no calls= in %q", name, val)
		}
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[cmd] = v
	}
	return out, nil
}

// callDelta returns after-before per command, without the commands in
// ignore and without zeros.
func callDelta(before, after map[string]int64, ignore ...string) map[string]int64 {
	out := map[string]int64{}
	for cmd, n := range after {
		if d := n - before[cmd]; d != 0 && !slices.Contains(ignore, cmd) {
			out[cmd] = d
		}
	}
	return out
}

// formatCalls renders a delta as "evalsha=1 get=1 …", sorted by name;
// "none" when empty.
func formatCalls(d map[string]int64) string {
	if len(d) == 0 {
		return "none"
	}
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", n, d[n])
	}
	return b.String()
}

// calls reads INFO commandstats from every client in cs and sums them.
func calls(ctx context.Context, cs ...*redis.Client) (map[string]int64, error) {
	sum := map[string]int64{}
	for _, c := range cs {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, err
		}
		m, err := commandCalls(info)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

func TestInfoFields(t *testing.T) {
	got := infoFields("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=3,avg_ttl=0\r\n")
	if got["used_memory"] != "1048576" || got["db0"] != "keys=3,expires=3,avg_ttl=0" || len(got) != 3 {
		t.Errorf("got %v, want used_memory, used_memory_human and db0", got)
	}
}

func TestCommandCallsAndDelta(t *testing.T) {
	before, err := commandCalls("# Commandstats\r\ncmdstat_get:calls=3,usec=10,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\ncmdstat_ping:calls=7,usec=1\r\n")
	if err != nil {
		t.Fatal(err)
	}
	after, err := commandCalls("cmdstat_get:calls=5,usec=20\r\ncmdstat_ping:calls=9,usec=2\r\ncmdstat_evalsha:calls=1,usec=5\r\ncmdstat_info:calls=4,usec=5\r\n")
	if err != nil {
		t.Fatal(err)
	}
	d := callDelta(before, after, "ping", "info")
	if got, want := formatCalls(d), "evalsha=1 get=2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := formatCalls(callDelta(after, after)); got != "none" {
		t.Errorf("no change: got %q, want none", got)
	}
	if _, err := commandCalls("cmdstat_get:usec=3\r\n"); err == nil {
		t.Error("a stat without calls=: got nil error, want one")
	}
}

// basic is the base64 of "user:password", for a Basic Authorization value.
func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
