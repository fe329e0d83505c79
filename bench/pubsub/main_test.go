package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 of 1..100", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("0, 50,200")
	if err != nil || len(got) != 3 || got[0] != 0 || got[1] != 50 || got[2] != 200 {
		t.Errorf("got %v, %v; want [0 50 200], nil", got, err)
	}
	for _, bad := range []string{"", "a", "5,-1", "1,,2"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q): got nil error, want one", bad)
		}
	}
}

func TestCPUFromInfo(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\nused_cpu_sys_children:9.000000\r\n"
	got, err := cpuFromInfo(info)
	if err != nil || got != 1750*time.Millisecond {
		t.Errorf("got %v, %v; want 1.75s, nil", got, err)
	}
	for _, bad := range []string{"# CPU\r\nused_cpu_sys:1.5\r\n", "used_cpu_sys:x\r\nused_cpu_user:1\r\n"} {
		if _, err := cpuFromInfo(bad); err == nil {
			t.Errorf("cpuFromInfo(%q): got nil error, want one", bad)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker(2, 3)
	t0 := time.Unix(100, 0)
	tr.sent(0, t0)
	tr.got(0, t0.Add(time.Millisecond))
	tr.got(0, t0.Add(3*time.Millisecond))
	tr.got(5, t0)  // another publisher's message: ignored
	tr.got(-1, t0) // likewise
	err := tr.wait(t.Context(), 0, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "reached 2 of 3") {
		t.Errorf("with one subscriber missing: got %v, want a timeout naming 2 of 3", err)
	}
	tr.got(0, t0.Add(2*time.Millisecond)) // the last one, though not the latest clock
	if err := tr.wait(t.Context(), 0, time.Second); err != nil {
		t.Fatalf("got %v, want nil once every subscriber has it", err)
	}
	if got := tr.delivered(0); got != 2*time.Millisecond {
		t.Errorf("got delivery %v, want 2ms (the last receipt)", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := tr.wait(ctx, 1, time.Minute); err == nil {
		t.Error("cancelled wait: got nil, want the context's error")
	}
}

// table runs cfg and returns the result lines (after the two header lines).
func table(t *testing.T, cfg config) []string {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "run\t") {
		t.Fatalf("got output %q, want a banner and a header", out.String())
	}
	t.Logf("\n%s", out.String())
	return lines[2:]
}

// fields returns line's tab-separated fields, wanting n of them.
func fields(t *testing.T, line string, n int) []string {
	t.Helper()
	f := strings.Split(line, "\t")
	if len(f) != n {
		t.Fatalf("got %d fields in %q, want %d", len(f), line, n)
	}
	return f
}

func TestRunDeliversToEverySubscriber(t *testing.T) {
	srv := redistest.Start(t)
	lines := table(t, config{URL: srv.URL(), Subscribers: []int{0, 3}, Publishes: 10, Runs: 1, Heartbeat: 5 * time.Millisecond})
	if len(lines) != 2 {
		t.Fatalf("got %d result lines, want 2", len(lines))
	}
	// run, subscribers, publishes, p50, p99, deliver p50, deliver p99, cpu, receivers
	none := fields(t, lines[0], 9)
	if none[1] != "0" || none[5] != "-" || none[8] != "0" {
		t.Errorf("without subscribers: got %q, want no delivery time and 0 receivers", lines[0])
	}
	three := fields(t, lines[1], 9)
	if three[1] != "3" || three[2] != "10" || three[5] == "-" || three[8] != "3" {
		t.Errorf("with 3 subscribers: got %q, want 10 publishes, a delivery time and 3 receivers", lines[1])
	}
}

func TestRunOnClusterCrossesTheBus(t *testing.T) {
	c := redistest.StartCluster(t)
	lines := table(t, config{URL: c.URL(), Subscribers: []int{2}, Publishes: 5, Runs: 1})
	f := fields(t, lines[0], 9)
	// Every message reached both subscribers (run fails otherwise), though
	// the node it was published on holds none of them.
	if f[1] != "2" || f[5] == "-" || f[8] != "0" {
		t.Errorf("got %q, want 2 subscribers reached through the bus and 0 local receivers", lines[0])
	}
}

// TestMeasure is the measurement docs/capacity.md reports; it runs only when
// USERPROXY_BENCH_PUBSUB is set (it takes a minute or two of both CPUs):
//
//	USERPROXY_BENCH_PUBSUB=1 go test -count=1 -v -run TestMeasure ./bench/pubsub
func TestMeasure(t *testing.T) {
	if os.Getenv("USERPROXY_BENCH_PUBSUB") == "" {
		t.Skip("set USERPROXY_BENCH_PUBSUB=1 to measure")
	}
	cfg := config{Subscribers: []int{0, 50, 200}, Publishes: 2000, Runs: 2, Heartbeat: 250 * time.Millisecond}
	t.Run("single", func(t *testing.T) {
		cfg.URL = redistest.Start(t).URL()
		table(t, cfg)
	})
	t.Run("cluster", func(t *testing.T) {
		cfg.URL = redistest.StartCluster(t).URL()
		table(t, cfg)
	})
}
