package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// results is a bench/run results file: scenario system req/s p50_us p99_us
// upstream_calls errors rss_kib other_cpu.
const results = "cold misses\tdirect upstream\t3000\t21000\t22000\t30000\t0\t-\t5\n" +
	"cold misses\tuserproxy L1+Redis\t2970\t21400\t23000\t29700\t0\t-\t5\n" +
	"cold misses\tuserproxy Redis only\t2700\t23000\t30000\t27000\t0\t-\t5\n" +
	"hot hits\tnginx\t40000\t800\t4000\t0\t0\t46080\t5\n" +
	"hot hits\tVarnish\t50000\t700\t4000\t0\t0\t225280\t5\n" +
	"hot hits\tuserproxy L1+Redis\t60000\t500\t2800\t0\t0\t40960\t5\n" +
	"hot hits\tuserproxy Redis only\t30000\t2000\t7000\t0\t0\t71680\t5\n" +
	"stampede\tdirect upstream\t-\t22500\t23000\t200\t0\t-\t5\n" +
	"stampede\tnginx\t-\t502000\t503000\t1\t0\t-\t5\n" +
	"stampede\tuserproxy L1+Redis\t-\t24000\t26000\t1\t0\t-\t5\n" +
	"stampede\tuserproxy Redis only\t-\t27000\t29000\t2\t0\t-\t5\n"

// report runs report.awk on in and returns its output.
func report(t *testing.T, in string) string {
	t.Helper()
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Skip("no awk on PATH")
	}
	path := filepath.Join(t.TempDir(), "results.tsv")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(awk, "-F", "\t", "-v", "latency_ms=20", "-v", "has_l1=1", "-f", "report.awk", path).CombinedOutput()
	if err != nil {
		t.Fatalf("awk failed: %v\n%s", err, out)
	}
	return string(out)
}

func TestReport(t *testing.T) {
	out := report(t, results)
	tests := []struct {
		name string
		want string // a whole line of out
	}{
		{"header", "| scenario | system | req/s | p50 | p99 | upstream calls | errors | RSS | vs nginx (req/s, p99) | vs Varnish (req/s, p99) | vs direct (req/s, p50 added) | CPU used by others |"},
		{"ratios to both anchors", "| hot hits | userproxy L1+Redis | 60000 | 0.50 ms | 2.80 ms | 0 | 0 | 40 MiB | 1.50× / 0.70× | 1.20× / 0.70× |  | 5% |"},
		{"cold ratio to direct", "| cold misses | userproxy L1+Redis | 2970 | 21.40 ms | 23.00 ms | 29700 | 0 | - |  |  | 0.99× / +0.40 ms | 5% |"},
		{"L1 goal met", "- hot hits, L1 on: req/s 1.20× Varnish (goal ≥ 1.2) **met**"},
		{"Redis-only goal not met", "- hot hits, Redis only: req/s 0.75× nginx (goal ≥ 0.8) **not met**"},
		{"stampede met", "- stampede, userproxy L1+Redis: 1 upstream call(s) (goal 1) **met**; p50 24.0 ms, +1.5 ms over direct (goal ≤ +2 ms) **met**"},
		{"stampede not met", "- stampede, userproxy Redis only: 2 upstream call(s) (goal 1) **not met**; p50 27.0 ms, +4.5 ms over direct (goal ≤ +2 ms) **not met**"},
		{"cold met", "- cold misses, userproxy L1+Redis: req/s 0.990× direct (goal ≥ 0.98) **met**; p50 +0.40 ms (goal ≤ +0.5 ms) **met**"},
		{"cold not met", "- cold misses, userproxy Redis only: req/s 0.900× direct (goal ≥ 0.98) **not met**; p50 +2.00 ms (goal ≤ +0.5 ms) **not met**"},
		{"memory met", "- memory, userproxy L1+Redis: RSS 40 MiB under the hot load (goal ≤ 64 MiB) **met**"},
		{"memory not met", "- memory, userproxy Redis only: RSS 70 MiB under the hot load (goal ≤ 64 MiB) **not met**"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(out, tt.want+"\n") {
				t.Errorf("got report\n%s\nwant a line %q", out, tt.want)
			}
		})
	}
	if hot, cold := strings.Index(out, "| hot hits |"), strings.Index(out, "| cold misses |"); hot < 0 || cold < hot {
		t.Errorf("got hot hits at %d and cold misses at %d, want hot hits first", hot, cold)
	}
}

func TestReportWithoutAnchors(t *testing.T) {
	out := report(t, "hot hits\tuserproxy Redis only\t30000\t2000\t7000\t0\t0\t30720\t5\n"+
		"stampede\tuserproxy Redis only\t-\t27000\t29000\t1\t0\t-\t5\n")
	for _, want := range []string{
		"- hot hits, L1 on: not measured (no Varnish in this run)",
		"- hot hits, Redis only: not measured (no nginx in this run)",
		"- memory, userproxy Redis only: RSS 30 MiB under the hot load (goal ≤ 64 MiB) **met**",
		"- stampede, userproxy Redis only: 1 upstream call(s) (goal 1) **met**; p50 not judged (no direct row)",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("got report\n%s\nwant a line %q", out, want)
		}
	}
}
