package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestCPUTicks(t *testing.T) {
	tests := []struct {
		name, stat string
		want       int64
		wantErr    bool
	}{
		{"plain", "1234 (varnishd) S 1 1234 1234 0 -1 4194560 500 0 0 0 170 35 0 0 20 0 2 0 100 1000 200", 205, false},
		// A command name with spaces and ")" must not shift the fields.
		{"odd name", "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 9 1 0 0 20 0 1 0 5 6 7", 10, false},
		{"short", "77 (x) R 1 2 3", 0, true},
		{"no name", "77 x R", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cpuTicks(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("cpuTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRSS(t *testing.T) {
	status := "Name:\tredis-server\nVmPeak:\t  90000 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n"
	if got := rssKiB(status); got != 12345 {
		t.Errorf("rssKiB = %d, want 12345", got)
	}
	if got := rssKiB("Name:\tzombie\n"); got != 0 {
		t.Errorf("rssKiB without VmRSS = %d, want 0", got)
	}
}

func TestParseGroup(t *testing.T) {
	g, err := parseGroup("redis=12,34")
	if err != nil || g.name != "redis" || !slices.Equal(g.pids, []int{12, 34}) {
		t.Errorf("parseGroup(redis=12,34) = %+v, %v", g, err)
	}
	for _, bad := range []string{"redis", "=12", "redis=", "redis=x", "redis=-1", "a b=1"} {
		if _, err := parseGroup(bad); err == nil {
			t.Errorf("parseGroup(%q): no error", bad)
		}
	}
}

// TestGroupReadsThisProcess: the CPU and RSS of a live process (this test)
// come out of /proc, and burning CPU moves the CPU figure.
func TestGroupReadsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	g := group{name: "self", pids: []int{os.Getpid()}}
	before := g.cpu()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	if after := g.cpu(); after <= before {
		t.Errorf("CPU ticks %d after 300 ms of spinning, %d before: want more", after, before)
	}
	if got := g.rss(); got <= 0 {
		t.Errorf("RSS of this process = %d KiB, want > 0", got)
	}
}
