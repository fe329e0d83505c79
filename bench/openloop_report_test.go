package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// olResults is a bench/run open-loop results file: rate system
// achieved_rps p50_us p99_us p999_us max_us cpu_us_per_req
// redis_cpu_us_per_req rss_kib failed blocked other_cpu note upstream_calls.
// The 6000/s rows come before the 500/s ones, as an extra rate found later
// would.
const olResults = "6000\tVarnish\t5990.5\t300\t9000\t20000\t40000\t70.0\t-\t174080\t0\t0\t2\t-\t0\n" +
	"6000\tuserproxy L1+Redis\t5999.0\t200\t2000\t11000\t30000\t40.0\t1.0\t40960\t0\t0\t2\t-\t0\n" +
	"500\tVarnish\t500.0\t200\t800\t4000\t9000\t100.0\t-\t90112\t0\t0\t3\t-\t0\n" +
	"500\tuserproxy L1+Redis\t500.0\t150\t700\t5000\t11000\t40.0\t10.0\t40960\t0\t0\t3\t-\t0\n" +
	"2000\tVarnish\t2000.0\t200\t1200\t4000\t9000\t60.0\t-\t90112\t0\t0\t3\t-\t0\n" +
	"2000\tuserproxy Redis only\t1999.0\t300\t1500\t5000\t6000\t70.0\t30.0\t70656\t2\t5\t3\t-\t12\n" +
	"3200\tVarnish\t3200.0\t250\t2000\t4500\t9000\t55.0\t-\t90112\t0\t0\t3\t80% of 4000/s\t0\n"

// olReport runs openloop.awk on in and returns its output.
func olReport(t *testing.T, in string) string {
	t.Helper()
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Skip("no awk on PATH")
	}
	path := filepath.Join(t.TempDir(), "openloop.tsv")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(awk, "-F", "\t", "-f", "openloop.awk", path).CombinedOutput()
	if err != nil {
		t.Fatalf("awk failed: %v\n%s", err, out)
	}
	return string(out)
}

func TestOpenLoopReport(t *testing.T) {
	out := olReport(t, olResults)
	tests := []struct {
		name string
		want string // a whole line of out
	}{
		{"header", "| rate | system | achieved req/s | p50 | p99 | p99.9 | max | CPU µs/req | Redis CPU µs/req | RSS | vs Varnish: CPU (own / with Redis) | vs Varnish: p99 / p99.9 | failed / blocked | upstream calls | CPU used by others |"},
		{"anchor row", "| 500/s | Varnish | 500 | 0.20 ms | 0.80 ms | 4.00 ms | 9.00 ms | 100.0 | - | 88 MiB |  |  | 0 / 0 | 0 | 3% |"},
		{"ratios with Redis", "| 500/s | userproxy L1+Redis | 500 | 0.15 ms | 0.70 ms | 5.00 ms | 11.00 ms | 40.0 | 10.0 | 40 MiB | 0.40× / 0.50× | 0.88× / 1.25× | 0 / 0 | 0 | 3% |"},
		{"failed and blocked", "| 2000/s | userproxy Redis only | 1999 | 0.30 ms | 1.50 ms | 5.00 ms | 6.00 ms | 70.0 | 30.0 | 69 MiB | 1.17× / 1.67× | 1.25× / 1.25× | 2 / 5 | 12 | 3% |"},
		{"extra rate labelled", "| 3200/s (80% of 4000/s) | Varnish | 3200 | 0.25 ms | 2.00 ms | 4.50 ms | 9.00 ms | 55.0 | - | 88 MiB |  |  | 0 / 0 | 0 | 3% |"},
		{"500 tier goal: CPU met, p99.9 not", "- open loop 500/s, tier on: CPU 0.40× Varnish (0.50× with Redis; goal ≤ 0.5) **met**; p99 0.88× Varnish's (goal ≤ 1) **met**; p99.9 1.25× Varnish's (goal ≤ 1) **not met**"},
		{"2000 Redis-only goal", "- open loop 2000/s, Redis only: CPU 1.17× Varnish (1.67× with Redis; goal ≤ 1.0) **not met**; p99 1.25× Varnish's (goal ≤ 1.5) **met**"},
		{"6000 tier goal", "- open loop 6000/s, tier on: CPU 0.57× Varnish (0.59× with Redis; goal ≤ 0.6) **met**; p99 0.22× Varnish's (goal ≤ 1) **met**"},
		{"memory not met", "- memory: largest userproxy RSS 69 MiB (userproxy Redis only, 2000/s; goal ≤ 64 MiB) **not met**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(out, tt.want+"\n") {
				t.Errorf("got report\n%s\nwant a line %q", out, tt.want)
			}
		})
	}
	// Rates in increasing order, whatever order they were measured in.
	i500, i2000, i3200, i6000 := strings.Index(out, "| 500/s"), strings.Index(out, "| 2000/s"), strings.Index(out, "| 3200/s"), strings.Index(out, "| 6000/s")
	if i500 < 0 || i500 > i2000 || i2000 > i3200 || i3200 > i6000 {
		t.Errorf("rows at %d (500/s), %d (2000/s), %d (3200/s), %d (6000/s): want increasing rates", i500, i2000, i3200, i6000)
	}
	// No goal line for a rate without a Varnish row (2000/s tier on).
	if strings.Contains(out, "2000/s, tier on") {
		t.Errorf("got report\n%s\nwant no 2000/s tier-on goal (no such row)", out)
	}
}
