package capacity

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// Test values, not secrets: the proxies run on loopback for one test.
const (
	testKeySecret  = "capacity-test-key-secret-0123456789"
	testAdminToken = "capacity-test-admin-token"
)

// buildUserproxy builds cmd/userproxy into a temporary directory.
func buildUserproxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "userproxy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/userproxy/userproxy/cmd/userproxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proxy is one userproxy process.
type proxy struct{ url, admin string }

// startProxy runs bin against redisURL and upstreamURL with args on top,
// waits until it is ready, and stops it (SIGTERM, by its PID) when t ends.
func startProxy(t *testing.T, bin, redisURL, upstreamURL string, args ...string) proxy {
	t.Helper()
	p := proxy{url: "http://" + freeAddr(t), admin: "http://" + freeAddr(t)}
	argv := append([]string{
		"-listen", strings.TrimPrefix(p.url, "http://"),
		"-admin-listen", strings.TrimPrefix(p.admin, "http://"),
		"-upstream-url", upstreamURL,
		"-redis-url", redisURL,
		"-key-secret", testKeySecret,
		"-admin-token", testAdminToken,
		"-log-level", "warn",
	}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	hc := testkit.HTTPClient(t)
	testkit.Await(t, "userproxy ready", func() bool {
		resp, err := hc.Get(p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// do sends one request and returns its status and Cache-Status.
func do(t *testing.T, hc *http.Client, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Cache-Status")
}

// ignored are commands that are not a request's: the tier's heartbeats
// (PING on the subscription) and this test's own INFO.
var ignored = []string{"ping", "info"}

// settled waits until the command counts stop moving (background refreshes,
// a purge's second pass) for quiet, and returns them.
func settled(t *testing.T, c *redis.Client, quiet time.Duration) map[string]int64 {
	t.Helper()
	last, err := calls(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	stableSince := time.Now()
	for time.Since(stableSince) < quiet {
		time.Sleep(50 * time.Millisecond)
		now, err := calls(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if len(callDelta(last, now, ignored...)) > 0 {
			stableSince = time.Now()
		}
		last = now
	}
	return last
}

// TestCommands runs two userproxy binaries (A and B, tier on, as deployed)
// on one redis-server and reports the Redis commands each request path
// costs, from INFO commandstats before and after one request. Commands run
// inside a script (EVALSHA) are counted as well as the script call itself.
func TestCommands(t *testing.T) {
	requireMeasure(t)
	bin := buildUserproxy(t)
	srv := redistest.Start(t)
	up := upstreamtest.NewServer(t, upstreamtest.Options{Users: 50})
	// A short fresh lifetime so that the stale path can be reached; a short
	// upstream timeout so that a purge's second pass comes soon. The fleet
	// breaker hint reads its record 4 times a second in the background: off
	// here, so that a request's commands are its own; its background cost
	// is measured at the end, with C and D. Fill leases stay on (default).
	flags := []string{"-cache-ttl", "3s", "-stale-while-revalidate", "30s", "-upstream-timeout", "1s", "-breaker-fleet-quorum", "0"}
	a := startProxy(t, bin, srv.URL(), up.URL, flags...)
	b := startProxy(t, bin, srv.URL(), up.URL, flags...)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rc.Close() })
	hc := testkit.HTTPClient(t)
	cred := upstreamtest.DemoCredentials()[0]
	auth := "Basic " + basic(cred.Username, cred.Password)
	bearer := "Bearer " + testAdminToken

	// Load the scripts once (a first EVALSHA falls back to EVAL) and let
	// the subscriptions settle.
	do(t, hc, "GET", a.url+"/api/users/40", auth, "")
	do(t, hc, "GET", b.url+"/api/users/40", auth, "")
	do(t, hc, "PUT", a.url+"/api/users/40", auth, `{"first_name":"Warm"}`)

	step := func(name string, quiet time.Duration, fn func() string) {
		t.Helper()
		before := settled(t, rc, 300*time.Millisecond)
		what := fn()
		after := settled(t, rc, quiet)
		t.Logf("%-44s %-40s %s", name, what, formatCalls(callDelta(before, after, ignored...)))
	}
	get := func(p proxy, id string) func() string {
		return func() string {
			code, cs := do(t, hc, "GET", p.url+"/api/users/"+id, auth, "")
			return strconv.Itoa(code) + " " + cs
		}
	}
	step("miss (A)", 300*time.Millisecond, get(a, "1"))
	step("fresh hit from the tier (A)", 300*time.Millisecond, get(a, "1"))
	step("hit from Redis (B, tier cold)", 300*time.Millisecond, get(b, "1"))
	step("fresh hit from the tier (B)", 300*time.Millisecond, get(b, "1"))
	step("negative miss, 404 (A)", 300*time.Millisecond, get(a, "999"))
	step("negative hit from the tier (A)", 300*time.Millisecond, get(a, "999"))
	time.Sleep(3500 * time.Millisecond) // past -cache-ttl
	step("stale hit + background refresh (A)", time.Second, get(a, "1"))
	step("write: PUT through A", 300*time.Millisecond, func() string {
		code, _ := do(t, hc, "PUT", a.url+"/api/users/1", auth, `{"first_name":"Changed"}`)
		return strconv.Itoa(code)
	})
	step("miss after the write (B)", 300*time.Millisecond, get(b, "1"))
	// Two replicas miss the same cold user at once: one fills under the
	// lease, the other waits for its announcement.
	up.SetLatency(300 * time.Millisecond)
	step("contended miss: A and B at once", 300*time.Millisecond, func() string {
		var wg sync.WaitGroup
		res := make([]string, 2)
		for i, p := range []proxy{a, b} {
			wg.Go(func() { res[i] = get(p, "2")() })
		}
		wg.Wait()
		return res[0] + " | " + res[1]
	})
	up.SetLatency(0)
	step("purge one user (admin, A)", 300*time.Millisecond, func() string {
		code, _ := do(t, hc, "DELETE", a.admin+"/admin/cache/users/1", bearer, "")
		return strconv.Itoa(code)
	})

	// Purge of everything: fill many users first, as the proxy would.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store := cache.NewRedis(rc, cache.RedisOptions{})
	const users, scopes = 5000, 2
	now := time.Now()
	e := cache.Entry{Status: 200, ContentType: "application/json", Body: typicalBody(t), Stored: now, Expires: now.Add(time.Minute)}
	for u := range users {
		for s := range scopes {
			if err := store.Set(ctx, cache.Key{ID: strconv.Itoa(100000 + u), Scope: scopeOf(s)}, e, time.Hour, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys, err := rc.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	step("purge everything (admin, A), both passes", 3*time.Second, func() string {
		code, _ := do(t, hc, "DELETE", a.admin+"/admin/cache", bearer, "")
		return strconv.Itoa(code) + " over " + strconv.FormatInt(keys, 10) + " keys"
	})

	// What an idle replica costs: its heartbeats, and with the fleet
	// breaker hint on (C and D, the defaults) the reads of its record.
	idle := func(name string) {
		t.Helper()
		before, err := calls(ctx, rc)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		after, err := calls(ctx, rc)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-44s %-40s %s", name, "", formatCalls(callDelta(before, after, "info")))
	}
	idle("idle 2 s: A, B (fleet breaker hint off)")
	startProxy(t, bin, srv.URL(), up.URL)
	startProxy(t, bin, srv.URL(), up.URL)
	time.Sleep(time.Second)
	idle("idle 2 s: A, B + C, D (all defaults)")
	if n, err := rc.PubSubNumSub(ctx, "userproxy:invalidations", "userproxy:fills").Result(); err == nil {
		t.Logf("subscribers: %v", n)
	}

	// The entry a real fill stored, for the memory figures.
	found, _, err := rc.Scan(ctx, 0, "userproxy:{40}:*", 100).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range found {
		n, err := rc.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		strlen, _ := rc.StrLen(ctx, k).Result()
		kind := "entry"
		if strings.HasSuffix(k, ":gen") {
			kind = "generation key"
		}
		t.Logf("stored by a real fill: %s, value %d B, MEMORY USAGE %d B", kind, strlen, n)
	}
}
