package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// promServer is a real Prometheus started by the test.
type promServer struct {
	url    string
	client *http.Client
}

// startPrometheus runs the prometheus binary on a free loopback port with
// its own storage in a temporary directory, the project's rules, and one
// scrape job "userproxy" for target (host:port), every second. It stops
// when t ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := promTool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: userproxy
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() { // runs before the TempDir is removed
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})
	p := &promServer{url: "http://" + addr, client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(p.client.CloseIdleConnections)
	waitUntil(t, 20*time.Second, "prometheus ready", func() (bool, string) {
		select {
		case <-exited:
			t.Fatal("prometheus exited while starting (see its log below)")
		default:
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago. Prometheus cannot report a port it picked itself, so one is chosen
// for it; the window for a clash is tiny.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitUntil polls cond every 250 ms until it holds, failing t after max.
// Prometheus scrapes and evaluates on its own 1s clock, so polling is the
// only way to observe it.
func waitUntil(t *testing.T, max time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-deadline.C:
			t.Fatalf("waiting for %s: gave up after %s; last state: %s", what, max, last)
		case <-tick.C:
		}
	}
}

// get decodes the "data" of a Prometheus HTTP API answer into v.
func (p *promServer) get(t *testing.T, path string, v any) error {
	t.Helper()
	resp, err := p.client.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

// query runs an instant query and returns its samples' values.
func (p *promServer) query(t *testing.T, q string) ([]float64, error) {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	var vals []float64
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: sample %q: %v", q, s, err)
		}
		vals = append(vals, v)
	}
	return vals, nil
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promServer) alerts(t *testing.T) []promAlert {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get(t, "/api/v1/alerts", &data); err != nil {
		t.Fatal(err)
	}
	return data.Alerts
}

// TestPrometheusEndToEnd runs the real Prometheus with the project's rules
// against a running userproxy -demo: the rules load and evaluate without
// error, the hit-ratio recording rule has a sane value under traffic, no
// alert is pending or firing while healthy, and with the upstream forced
// down the breaker alert goes pending (its for: 1m would make it fire a
// minute later; promtool's tests cover that).
func TestPrometheusEndToEnd(t *testing.T) {
	promTool(t, "prometheus") // skip early, before starting anything
	d := startDemo(t, "-breaker-failures=3", "-breaker-open-timeout=5m")
	adminHost := d.admin[len("http://"):]
	p := startPrometheus(t, adminHost)

	// Background traffic: three requests in four ask for users 1-10 again
	// and again (hits after the first ten), the fourth for a user never
	// asked before (a miss: the fake answers 404 above id 50, and the
	// proxy caches that). The hit ratio settles near 0.75.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			id := strconv.Itoa(1 + i%10)
			if i%4 == 3 {
				id = strconv.Itoa(100000 + i) // past the demo's users: a miss each time
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.proxy+"/api/users/"+id, nil)
			req.SetBasicAuth("demo", "demo-password")
			if resp, err := d.client.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()

	// The rules are loaded and evaluate cleanly.
	waitUntil(t, 20*time.Second, "every rule evaluated without error", func() (bool, string) {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.get(t, "/api/v1/rules", &data); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				if r.LastError != "" {
					t.Fatalf("rule %s: evaluation error %q", r.Name, r.LastError)
				}
				if r.Health != "ok" {
					return false, fmt.Sprintf("rule %s health %q", r.Name, r.Health)
				}
				n++
			}
		}
		want := len(loadRules(t))
		return n == want, fmt.Sprintf("%d rules loaded, want %d", n, want)
	})

	// The hit ratio, as the recording rule computes it, is sane.
	var ratio float64
	waitUntil(t, 30*time.Second, "a hit ratio near 0.75 from the recording rule", func() (bool, string) {
		vals, err := p.query(t, `job:userproxy_cache_hit_ratio:ratio_rate5m{job="userproxy"}`)
		if err != nil || len(vals) != 1 {
			return false, fmt.Sprintf("samples %v, err %v", vals, err)
		}
		ratio = vals[0]
		return ratio > 0.6 && ratio < 0.9, fmt.Sprintf("ratio %v", ratio)
	})
	t.Logf("hit ratio from the recording rule: %.3f", ratio)
	if vals, err := p.query(t, `up{job="userproxy"}`); err != nil || len(vals) != 1 || vals[0] != 1 {
		t.Fatalf("up{job=\"userproxy\"}: got %v (err %v), want [1]", vals, err)
	}

	// Healthy: no alert pending or firing over several evaluations.
	checks := 0
	waitUntil(t, 10*time.Second, "four quiet evaluations", func() (bool, string) {
		if a := p.alerts(t); len(a) > 0 {
			t.Fatalf("healthy run: got alerts %+v, want none", a)
		}
		checks++
		return checks >= 16, fmt.Sprintf("%d checks", checks) // 16 × 250 ms: four evaluations
	})

	// Upstream down: every miss fails, the breaker opens.
	resp, err := d.client.Post(d.upstream+"/_fake/fault?mode=500", "", nil)
	if err != nil {
		t.Fatalf("switching the fake upstream to 500s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("switching the fake upstream to 500s: got %s", resp.Status)
	}
	for id := 20; id < 26; id++ { // uncached users: each is an upstream call until the breaker opens
		d.do(t, http.MethodGet, d.proxy+"/api/users/"+strconv.Itoa(id), "")
	}
	waitUntil(t, 20*time.Second, "UserproxyCircuitBreakerOpen pending or firing", func() (bool, string) {
		for _, a := range p.alerts(t) {
			if a.Labels["alertname"] == "UserproxyCircuitBreakerOpen" {
				if a.Labels["job"] != "userproxy" || a.Labels["severity"] != "critical" {
					t.Fatalf("breaker alert labels: got %v, want job=userproxy severity=critical", a.Labels)
				}
				return a.State == "pending" || a.State == "firing", a.State
			}
		}
		return false, "not active"
	})
}
