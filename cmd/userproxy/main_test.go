package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// syncBuffer is a log buffer safe for concurrent writers.
type syncBuffer = testkit.SyncBuffer

// started is a running userproxy.
type started struct {
	proxy, admin string
	stdout       *syncBuffer
	logs         *syncBuffer
	stop         context.CancelFunc
	exit         chan int
}

func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{stdout: &syncBuffer{}, logs: &syncBuffer{}, stop: cancel, exit: make(chan int, 1)}
	ready := make(chan [2]string, 1)
	args = append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...)
	go func() { s.exit <- run(ctx, args, env(), s.stdout, s.logs, ready) }()
	select {
	case addrs := <-ready:
		s.proxy, s.admin = "http://"+addrs[0], "http://"+addrs[1]
	case code := <-s.exit:
		t.Fatalf("userproxy exited with %d before listening: %s", code, s.logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("userproxy did not start within 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.exit:
		case <-time.After(20 * time.Second):
			t.Error("userproxy did not exit within 20s of being stopped")
		}
	})
	return s
}

func get(t *testing.T, url, user, pass string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDemoEndToEnd(t *testing.T) {
	s := start(t, "-demo")
	if out := s.stdout.String(); !strings.Contains(out, "curl -i -u demo:demo-password "+s.proxy+"/api/users/1") {
		t.Errorf("demo banner lacks a ready curl line for %s:\n%s", s.proxy, out)
	}
	demo := upstreamtest.DemoCredentials()[0]
	resp, first := get(t, s.proxy+"/api/users/1", demo.Username, demo.Password)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss") {
		t.Fatalf("first request: got %d %q, want 200 miss", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	resp, second := get(t, s.proxy+"/api/users/1", demo.Username, demo.Password)
	if !strings.HasPrefix(resp.Header.Get("Cache-Status"), "userproxy; hit") || second != first {
		t.Errorf("second request: got %q, want a hit with the same body", resp.Header.Get("Cache-Status"))
	}

	_, metrics := get(t, s.admin+"/metrics", "", "")
	for _, name := range []string{
		`userproxy_requests_total{cache="hit",code="200"} 1`,
		`userproxy_requests_total{cache="miss",code="200"} 1`,
		"userproxy_request_duration_seconds_bucket",
		`userproxy_upstream_requests_total{code="200"} 1`,
		"userproxy_upstream_request_duration_seconds_bucket",
		`userproxy_circuit_breaker_state{breaker="upstream"} 0`,
		`userproxy_cache_errors_total{op="get"} 0`,
		"userproxy_coalesced_requests_total 0",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if resp, body := get(t, s.admin+"/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz: got %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, s.admin+"/readyz", "", ""); resp.StatusCode != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("/readyz: got %d %q", resp.StatusCode, body)
	}
	if logs := s.logs.String(); strings.Contains(logs, demo.Password) {
		t.Errorf("logs contain the password:\n%s", logs)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	up := upstreamtest.NewServer(t, upstreamtest.Options{Latency: 500 * time.Millisecond})
	s := start(t, "-upstream-url", up.URL, "-shutdown-timeout", "10s")
	demo := upstreamtest.DemoCredentials()[0]

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.proxy+"/api/users/2", nil)
		req.SetBasicAuth(demo.Username, demo.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	// Wait until the request is in flight at the upstream, then stop.
	testkit.Await(t, "the request to reach the upstream", func() bool { return up.RequestsFor("2") > 0 })
	s.stop()

	// While draining, readiness is withdrawn (the admin listener stays up
	// until the proxy has drained).
	if resp, body := get(t, s.admin+"/readyz", "", ""); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: got %d %q, want 503 draining", resp.StatusCode, body)
	}
	r := <-done
	if r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request: got %d, %v; want 200", r.status, r.err)
	}
	select {
	case code := <-s.exit:
		if code != 0 {
			t.Errorf("exit status: got %d, want 0", code)
		}
		s.exit <- code // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("userproxy did not exit after draining")
	}
	// New connections are refused once it has stopped.
	if _, err := http.Get(s.proxy + "/api/users/2"); err == nil {
		t.Error("a request after shutdown was accepted")
	}
}

// TestEncryptedRedisEndToEnd runs the binary's wiring against a private
// redis-server with an encryption key and redaction: what lands in Redis is
// neither the body nor the redacted field, and clients still get the user.
func TestEncryptedRedisEndToEnd(t *testing.T) {
	rs := redistest.Start(t)
	up := upstreamtest.NewServer(t, upstreamtest.Options{})
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600)
	s := start(t, "-upstream-url", up.URL, "-redis-url", rs.URL(), "-key-secret", "0123456789abcdef-secret",
		"-cache-encryption-key-file", keyFile, "-redact-fields", "registration_password")
	demo := upstreamtest.DemoCredentials()[0]
	// The tier flushes when its subscription is first established; let that
	// happen before the requests whose hits the test counts.
	testkit.Await(t, "the invalidation subscription", func() bool {
		_, m := get(t, s.admin+"/metrics", "", "")
		return strings.Contains(m, "userproxy_l1_subscriptions_total 1")
	})
	_, first := get(t, s.proxy+"/api/users/3", demo.Username, demo.Password)
	// A miss answers before its store; until the store is done, requests
	// join the fill (collapsed) and get its body.
	var resp *http.Response
	var second string
	testkit.Await(t, "the first request's store", func() bool {
		resp, second = get(t, s.proxy+"/api/users/3", demo.Username, demo.Password)
		if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "userproxy; hit") && !strings.Contains(cs, "; collapsed") {
			t.Fatalf("request after the first: %q, want a hit or the first's fill", cs)
		}
		return strings.HasPrefix(resp.Header.Get("Cache-Status"), "userproxy; hit")
	})
	if second != first {
		t.Fatalf("second request: %q, want the same body", second)
	}
	if strings.Contains(first, "registration_password") || !strings.Contains(first, `"username"`) {
		t.Errorf("body: got %q, want the user without registration_password", first)
	}
	// The second request was answered by the in-process tier.
	if _, m := get(t, s.admin+"/metrics", "", ""); !strings.Contains(m, "userproxy_l1_hits_total 1") {
		t.Errorf("/metrics: want userproxy_l1_hits_total 1 after one hit; got\n%s", grepLines(m, "userproxy_l1_"))
	}
	// With Redis the fleet breaker hint is on (-breaker-fleet-quorum 2).
	if _, m := get(t, s.admin+"/metrics", "", ""); !strings.Contains(m, `userproxy_circuit_breaker_state{breaker="fleet"} 0`) ||
		!strings.Contains(m, "userproxy_fleet_breaker_reports 0") {
		t.Errorf("/metrics: want the fleet breaker hint's series at 0; got\n%s", grepLines(m, "breaker"))
	}
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer client.Close()
	keys, err := client.Keys(context.Background(), "*").Result() // our own test server: KEYS is fine here
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys in Redis: %v, %v", keys, err)
	}
	for _, k := range keys {
		v, _ := client.Get(context.Background(), k).Bytes()
		for _, secret := range []string{demo.Username, demo.Password, `"username"`, "registration_password", "application/json"} {
			if strings.Contains(k, secret) || bytes.Contains(v, []byte(secret)) {
				t.Errorf("Redis key %q or its value holds %q in the clear", k, secret)
			}
		}
	}
}

// TestShutdownIsBoundedByDrainTimeout: a request that will not finish does
// not hold the process past -shutdown-timeout.
func TestShutdownIsBoundedByDrainTimeout(t *testing.T) {
	up := upstreamtest.NewServer(t, upstreamtest.Options{})
	up.SetFault(upstreamtest.FaultHang)
	s := start(t, "-upstream-url", up.URL, "-shutdown-timeout", "300ms", "-upstream-timeout", "30s")
	demo := upstreamtest.DemoCredentials()[0]
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.proxy+"/api/users/2", nil)
		req.SetBasicAuth(demo.Username, demo.Password)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testkit.Await(t, "the request to hang at the upstream", func() bool { return up.Stats().Hanging > 0 })
	s.stop()
	select {
	case code := <-s.exit:
		s.exit <- code
	case <-time.After(10 * time.Second): // far above the 300ms bound: "bounded", not "fast"
		t.Fatal("userproxy still running 10s after SIGTERM with -shutdown-timeout 300ms")
	}
	if err := <-done; err == nil {
		t.Error("the hung request got an answer; want its connection closed at the drain bound")
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRedisNobodyAnswers: a -redis-url that nobody answers gets one clear
// warning at start, naming the URL without its password; the proxy still
// starts and serves (failing open to the upstream), and go-redis's own
// lines arrive as JSON records like every other line of the log.
func TestRedisNobodyAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nobody listens there now
	up := upstreamtest.NewServer(t, upstreamtest.Options{})
	s := start(t, "-upstream-url", up.URL, "-redis-url", "redis://:hunter2-password@"+dead+"/0",
		"-key-secret", "0123456789abcdef-secret", "-log-format", "json")

	demo := upstreamtest.DemoCredentials()[0]
	if resp, _ := get(t, s.proxy+"/api/users/1", demo.Username, demo.Password); resp.StatusCode != http.StatusOK {
		t.Errorf("request with Redis down: got %d, want 200 from the upstream", resp.StatusCode)
	}
	testkit.Await(t, "a go-redis line in the log", func() bool { return strings.Contains(s.logs.String(), `"component":"go-redis"`) })

	logs := s.logs.String()
	warnings := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec struct {
			Level, Msg string
			RedisURL   string `json:"redis_url"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not a JSON record: %q", line)
			continue
		}
		if rec.Level == "WARN" && strings.Contains(rec.Msg, "redis does not answer") {
			warnings++
			if want := "redis://:xxxxx@" + dead + "/0"; rec.RedisURL != want {
				t.Errorf("warning names redis_url %q, want %q", rec.RedisURL, want)
			}
			if !strings.Contains(rec.Msg, "fails open to the upstream") {
				t.Errorf("warning %q does not say the proxy fails open to the upstream", rec.Msg)
			}
		}
	}
	if warnings != 1 {
		t.Errorf("got %d warnings that Redis does not answer, want 1; log:\n%s", warnings, logs)
	}
	if strings.Contains(logs, "hunter2") {
		t.Errorf("the log holds the Redis password:\n%s", logs)
	}
}

// TestBreakerStatesAreTheGaugeValues: main sets
// userproxy_circuit_breaker_state to float64 of a breaker state, so the
// states of both packages must be the metric's values.
func TestBreakerStatesAreTheGaugeValues(t *testing.T) {
	for _, tc := range []struct {
		name       string
		got, want  float64
		str, wantS string
	}{
		{"cache closed", float64(cache.BreakerClosed), metrics.BreakerClosed, cache.BreakerClosed.String(), "closed"},
		{"cache half-open", float64(cache.BreakerHalfOpen), metrics.BreakerHalfOpen, cache.BreakerHalfOpen.String(), "half-open"},
		{"cache open", float64(cache.BreakerOpen), metrics.BreakerOpen, cache.BreakerOpen.String(), "open"},
		{"upstream closed", float64(upstream.BreakerClosed), metrics.BreakerClosed, upstream.BreakerClosed.String(), "closed"},
		{"upstream half-open", float64(upstream.BreakerHalfOpen), metrics.BreakerHalfOpen, upstream.BreakerHalfOpen.String(), "half-open"},
		{"upstream open", float64(upstream.BreakerOpen), metrics.BreakerOpen, upstream.BreakerOpen.String(), "open"},
	} {
		if tc.got != tc.want || tc.str != tc.wantS {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, tc.got, tc.str, tc.want, tc.wantS)
		}
	}
}
