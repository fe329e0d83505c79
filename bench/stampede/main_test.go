package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
	"go.uber.org/goleak"
	"golang.org/x/sync/singleflight"
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
		{"p100 is max", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of 4 is 2nd", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 4 is max", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// newUpstream starts a fake upstream with latency, closed at cleanup.
func newUpstream(t *testing.T, latency time.Duration) *upstreamtest.Server {
	t.Helper()
	return upstreamtest.NewServer(t, upstreamtest.Options{Users: 10, Latency: latency})
}

// demoCredentials returns the fake's first demo credential as user:password.
func demoCredentials() string {
	d := upstreamtest.DemoCredentials()[0]
	return d.Username + ":" + d.Password
}

// coalescer is the smallest caching-free proxy that coalesces: concurrent
// GETs of one path share one upstream call.
func coalescer(t *testing.T, upstream string) *httptest.Server {
	t.Helper()
	var g singleflight.Group
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err, _ := g.Do(r.URL.Path, func() (any, error) {
			req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, upstream+r.URL.Path, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", r.Header.Get("Authorization"))
			resp, err := c.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			return io.ReadAll(resp.Body)
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = w.Write(v.([]byte))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRun(t *testing.T) {
	const n = 40
	const latency = 150 * time.Millisecond
	up := newUpstream(t, latency)
	tests := []struct {
		name      string
		target    string // base URL the stampede hits
		wantCalls int64
	}{
		// Straight at the upstream: every request is an upstream call.
		{"direct", up.URL, n},
		// Through a coalescing proxy: one call for all. The requests are
		// released together and each waits latency, so all of them join
		// the first call.
		{"coalesced", coalescer(t, up.URL).URL, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := []string{"3", "4"}[i] // a cold key per case
			res, err := run(t.Context(), config{
				URL: tt.target + "/api/users/" + id, ID: id, Credentials: demoCredentials(),
				StatsURL: up.URL + "/_fake/stats", N: n,
			})
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if res.UpstreamCalls != tt.wantCalls {
				t.Errorf("got %d upstream calls, want %d", res.UpstreamCalls, tt.wantCalls)
			}
			if res.OK != n || res.Errors != 0 {
				t.Errorf("got ok=%d errors=%d (%s), want ok=%d errors=0", res.OK, res.Errors, res.FirstError, n)
			}
			if len(res.Latencies) != n {
				t.Fatalf("got %d latencies, want %d", len(res.Latencies), n)
			}
			if p50 := percentile(res.Latencies, 50); p50 < latency {
				t.Errorf("got p50 %v, want at least the upstream latency %v", p50, latency)
			}
			line := res.String()
			for _, want := range []string{"upstream_calls=", " ok=", " errors=0 ", " p50_ms=", " p99_ms=", " max_ms="} {
				if !strings.Contains(line, want) {
					t.Errorf("got line %q, want it to contain %q", line, want)
				}
			}
		})
	}
}

func TestRunCountsFailures(t *testing.T) {
	up := newUpstream(t, 0)
	up.SetFault(upstreamtest.FaultUnavailable)
	res, err := run(t.Context(), config{
		URL: up.URL + "/api/users/5", ID: "5", Credentials: demoCredentials(),
		StatsURL: up.URL + "/_fake/stats", N: 5,
	})
	if err != nil {
		t.Fatalf("got error %v, want nil (failed requests are a result)", err)
	}
	if res.Errors != 5 || res.OK != 0 {
		t.Errorf("got ok=%d errors=%d, want ok=0 errors=5", res.OK, res.Errors)
	}
	if !strings.Contains(res.FirstError, "503") {
		t.Errorf("got first error %q, want it to name status 503", res.FirstError)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	up := newUpstream(t, 0)
	good := config{URL: up.URL + "/api/users/1", ID: "1", Credentials: demoCredentials(), StatsURL: up.URL + "/_fake/stats", N: 2}
	tests := []struct {
		name   string
		modify func(*config)
	}{
		{"zero n", func(c *config) { c.N = 0 }},
		{"https url", func(c *config) { c.URL = "https://127.0.0.1:1/api/users/1" }},
		{"credentials without colon", func(c *config) { c.Credentials = "demo" }},
		{"stats not found", func(c *config) { c.StatsURL = up.URL + "/_fake/nope" }},
		{"nothing listening", func(c *config) { c.URL = "http://127.0.0.1:1/api/users/1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			if _, err := run(t.Context(), cfg); err == nil {
				t.Error("got nil error, want one")
			}
		})
	}
}
