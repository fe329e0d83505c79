package proxy_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// syncBuffer is a log buffer safe for concurrent writers.
type syncBuffer = testkit.SyncBuffer

// secretsRun is the traffic of TestSecretsNeverLeak and everything it
// produced that could hold a credential.
type secretsRun struct {
	t       *testing.T
	e       *env
	srv     *httptest.Server // the proxy, wrapped as cmd/userproxy wraps it
	admin   *httptest.Server
	answers strings.Builder // every response: status, headers, body
}

// send sends one request to srv and records the whole answer.
func (s *secretsRun) send(srv *httptest.Server, method, path, auth, body string, header ...string) int {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		s.t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	// Not the request itself: one of them carries the username in its
	// query, on purpose (pass-through traffic must not log it either).
	s.answers.WriteString(resp.Status + "\n")
	resp.Header.Write(&s.answers)
	s.answers.Write(b)
	s.answers.WriteString("\n\n")
	return resp.StatusCode
}

// TestSecretsNeverLeak runs traffic with distinctive credentials through a
// proxy on a real redis-server — hits, misses, 404s, writes, pass-through,
// purges, a wrong password, malformed headers, every upstream fault, Redis
// killed and restarted, the upstream gone — with every log record captured
// at Debug level. Then it searches everything the proxy produced or stored
// for the credentials: every Redis key and value, the logs, the metrics,
// /readyz, and every answer's headers and body. (Bodies hold user data such
// as the users' registration_password, which is not an API credential; the
// search is for the API user's username and password only.)
func TestSecretsNeverLeak(t *testing.T) {
	const user, pass, wrongPass = "secret-user-XYZ", "pa55-word-QRS", "wr0ng-pa55-VUT"
	secret := upstreamtest.Credential{Username: user, Password: pass, Tenant: "acme"}
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	needles := []string{
		user, pass, wrongPass,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
		base64.RawStdEncoding.EncodeToString([]byte(user + ":" + pass)),
		base64.URLEncoding.EncodeToString([]byte(user + ":" + pass)),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + wrongPass)),
		hex.EncodeToString([]byte(user)), hex.EncodeToString([]byte(pass)),
	}

	rs := redistest.Start(t)
	store := redisStore(t, rs.URL())
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := freshEnv(t, store, envOptions{
		upstream: upstreamtest.Options{Credentials: []upstreamtest.Credential{secret, {Username: "other", Password: "other-password", Tenant: "globex"}}},
		timeout:  200 * time.Millisecond,
		breaker:  upstream.BreakerOptions{ConsecutiveFailures: 1000},
		engine: func(o *readthrough.Options) {
			o.Logger = logger
			o.CacheTimeout = 200 * time.Millisecond // Redis is killed mid-test
		},
		proxy: func(o *proxy.Options) { o.Logger = logger },
	})
	s := &secretsRun{t: t, e: e}
	s.srv = httptest.NewServer(proxy.WithRequestID(proxy.AccessLog(e.h, proxy.AccessLogOptions{Logger: logger, SampleRate: 1})))
	t.Cleanup(s.srv.Close)
	s.admin = httptest.NewServer(proxy.NewAdmin(proxy.AdminOptions{Gatherer: e.reg, Ping: store.Ping, Purge: e.h.Purge(adminToken)}))
	t.Cleanup(s.admin.Close)
	good, wrong := basic(user+":"+pass), basic(user+":"+wrongPass)

	// Phase 1: Redis up, upstream healthy then faulty.
	for _, id := range []string{"1", "2", "3", "1", "2", "99999"} {
		s.send(s.srv, http.MethodGet, "/api/users/"+id, good, "")
	}
	s.send(s.srv, http.MethodHead, "/api/users/1", good, "")
	s.send(s.srv, http.MethodGet, "/api/users/1", good, "", "Cache-Control", "no-cache")
	s.send(s.srv, http.MethodGet, "/api/users/1", good, "", "Cache-Control", "no-store")
	if code := s.send(s.srv, http.MethodGet, "/api/users/1", wrong, ""); code != http.StatusUnauthorized {
		t.Errorf("wrong password: got %d, want 401", code)
	}
	for _, auth := range []string{
		basic(user + pass), basic(":" + pass), basic(user + ":" + pass + strings.Repeat("Q", 2048)),
		"Bearer " + pass, "Basic " + user + ":" + pass, good + ", " + good,
	} {
		if code := s.send(s.srv, http.MethodGet, "/api/users/1", auth, ""); code != http.StatusUnauthorized {
			t.Errorf("malformed credentials: got %d, want 401", code)
		}
	}
	s.send(s.srv, http.MethodPut, "/api/users/2", good, `{"first_name":"Changed"}`)
	s.send(s.srv, http.MethodPut, "/api/users/3", wrong, `{"first_name":"Denied"}`)
	s.send(s.srv, http.MethodPost, "/api/users", good, `{"username":"new.agent"}`)
	s.send(s.srv, http.MethodGet, "/api/desks?user="+user, good, "")
	s.send(s.admin, http.MethodDelete, "/admin/cache/users/3", "Bearer "+adminToken, "")
	s.send(s.admin, http.MethodDelete, "/admin/cache/users/3", "Bearer "+pass, "")
	s.send(s.srv, http.MethodGet, "/api/users/4", good, "")
	s.send(s.srv, http.MethodGet, "/api/users/5", good, "")
	e.clock.Advance(2 * time.Minute) // 4 and 5 are now stale-if-error material
	for i, f := range []upstreamtest.Fault{
		upstreamtest.FaultServerError, upstreamtest.FaultUnavailable, upstreamtest.FaultTooManyRequests,
		upstreamtest.FaultMalformed, upstreamtest.FaultOversize, upstreamtest.FaultHang, upstreamtest.FaultReset,
	} {
		e.up.SetFault(f)
		s.send(s.srv, http.MethodGet, "/api/users/"+itoa(10+i), good, "") // nothing cached: an error
		s.send(s.srv, http.MethodGet, "/api/users/4", good, "")           // served stale
	}
	e.up.SetFault(upstreamtest.FaultNone)
	s.send(s.srv, http.MethodGet, "/api/users/6", good, "")
	dump1 := dumpRedis(t, rs)
	if !strings.Contains(dump1, "{1}") || !strings.Contains(dump1, e.userBody(secret, "6")) {
		t.Fatalf("the Redis dump holds neither user 1's keys nor user 6's body; it proves nothing:\n%.2000s", dump1)
	}

	// Phase 2: Redis killed. Reads fail open, writes and purges cannot
	// invalidate, /readyz reports why: every error text is logged.
	rs.Kill()
	s.send(s.srv, http.MethodGet, "/api/users/6", good, "")
	s.send(s.srv, http.MethodGet, "/api/users/7", good, "")
	s.send(s.srv, http.MethodGet, "/api/users/7", wrong, "")
	s.send(s.srv, http.MethodPut, "/api/users/7", good, `{"first_name":"Outage"}`)
	s.send(s.admin, http.MethodDelete, "/admin/cache/users/7", "Bearer "+adminToken, "")
	s.send(s.admin, http.MethodGet, "/readyz", "", "")

	// Phase 3: Redis back, empty.
	rs.Restart()
	for _, id := range []string{"8", "8", "9"} {
		s.send(s.srv, http.MethodGet, "/api/users/"+id, good, "")
	}
	dump2 := dumpRedis(t, rs)

	// Phase 4: the upstream is gone.
	e.up.Close()
	s.send(s.srv, http.MethodGet, "/api/users/20", good, "")
	s.send(s.srv, http.MethodPut, "/api/users/20", good, `{"first_name":"Gone"}`)
	s.send(s.srv, http.MethodGet, "/api/desks", good, "")
	s.send(s.admin, http.MethodGet, "/readyz", "", "")
	s.send(s.admin, http.MethodGet, "/metrics", "", "")
	e.h.Close() // background refreshes done: their logs are in

	logText := logs.String()
	for _, want := range []string{`"msg":"request"`, "cache read failed", "upstream fetch failed"} {
		if !strings.Contains(logText, want) {
			t.Errorf("captured logs lack %q: the capture is not seeing what it should", want)
		}
	}
	if !strings.Contains(s.answers.String(), "userproxy_requests_total") {
		t.Error("the /metrics answer lacks userproxy_requests_total")
	}
	for _, place := range []struct{ name, text string }{
		{"Redis keys and values (Redis up)", dump1},
		{"Redis keys and values (after restart)", dump2},
		{"logs", logText},
		{"answers (headers, bodies, /metrics, /readyz)", s.answers.String()},
	} {
		for _, n := range needles {
			if i := strings.Index(place.text, n); i >= 0 {
				t.Errorf("%s contain the credential text %q: ...%s...", place.name, n,
					place.text[max(0, i-200):min(len(place.text), i+len(n)+100)])
			}
		}
	}
}

// dumpRedis returns every key of rs with its TTL, type, value and DUMP
// serialisation, plus CLIENT LIST, as text.
func dumpRedis(t *testing.T, rs *redistest.Server) string {
	t.Helper()
	client, err := cache.NewUniversalClient(rs.URL(), cache.ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("NewUniversalClient: %v", err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	for cursor := uint64(0); ; {
		batch, next, err := client.Scan(ctx, cursor, "*", 100).Result()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		keys = append(keys, batch...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		typ, err := client.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", k, err)
		}
		var val any
		switch typ {
		case "string":
			val, err = client.Get(ctx, k).Result()
		case "hash":
			val, err = client.HGetAll(ctx, k).Result()
		case "list":
			val, err = client.LRange(ctx, k, 0, -1).Result()
		case "set":
			val, err = client.SMembers(ctx, k).Result()
		case "zset":
			val, err = client.ZRange(ctx, k, 0, -1).Result()
		case "none":
			continue // expired since SCAN
		default:
			t.Fatalf("key %s has type %s, which this dump cannot read", k, typ)
		}
		if err != nil {
			t.Fatalf("reading %s %s: %v", typ, k, err)
		}
		dump, _ := client.Dump(ctx, k).Result()
		ttl, _ := client.PTTL(ctx, k).Result()
		fmt.Fprintf(&b, "%s (%s, ttl %v) = %v\nDUMP %q\n", k, typ, ttl, val, dump)
	}
	clients, err := client.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	b.WriteString("CLIENT LIST\n" + clients)
	return b.String()
}
