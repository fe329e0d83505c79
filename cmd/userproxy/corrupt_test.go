package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// TestCorruptEntryCountsAsDecodeError runs the binary's wiring against a
// private redis-server: an entry that no longer decodes is a miss, counted
// in userproxy_cache_errors_total{op="decode"} and logged without the
// caller's credentials.
func TestCorruptEntryCountsAsDecodeError(t *testing.T) {
	rs := redistest.Start(t)
	up := upstreamtest.NewServer(t, upstreamtest.Options{})
	// -l1-ttl 0: no in-process tier, so the second request reads Redis.
	s := start(t, "-upstream-url", up.URL, "-redis-url", rs.URL(), "-key-secret", "0123456789abcdef-secret", "-l1-ttl", "0")
	demo := upstreamtest.DemoCredentials()[0]
	const decode = `userproxy_cache_errors_total{op="decode"} `

	if resp, _ := get(t, s.proxy+"/api/users/3", demo.Username, demo.Password); resp.StatusCode != 200 {
		t.Fatalf("first request: got %d, want 200", resp.StatusCode)
	}
	if _, m := get(t, s.admin+"/metrics", "", ""); !strings.Contains(m, decode+"0") {
		t.Fatalf("/metrics after a fill: got %q, want %s0", grepLines(m, decode), decode)
	}

	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer client.Close()
	ctx := context.Background()
	// The miss answered before its store and its lease's release: wait for
	// both (the entry there, the lease gone).
	isEntry := func(k string) bool {
		return !strings.HasSuffix(k, ":gen") && !strings.Contains(k, "}:fill:") && !strings.Contains(k, "}:lease:")
	}
	var keys []string
	testkit.Await(t, "the fill's store and release", func() bool {
		var err error
		keys, err = client.Keys(ctx, "*").Result() // our own test server: KEYS is fine here
		if err != nil {
			t.Fatal(err)
		}
		return slices.IndexFunc(keys, isEntry) >= 0 && !slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "}:lease:") })
	})
	spoilt := 0
	for _, k := range keys {
		if isEntry(k) {
			if err := client.Set(ctx, k, "garbage", redis.KeepTTL).Err(); err != nil {
				t.Fatal(err)
			}
			spoilt++
		}
	}
	if spoilt != 1 {
		t.Fatalf("got %d entry keys in %q, want 1", spoilt, keys)
	}

	resp, body := get(t, s.proxy+"/api/users/3", demo.Username, demo.Password)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss") {
		t.Fatalf("request after the entry was spoilt: got %d %q %q, want a 200 miss", resp.StatusCode, resp.Header.Get("Cache-Status"), body)
	}
	if _, m := get(t, s.admin+"/metrics", "", ""); !strings.Contains(m, decode+"1") {
		t.Errorf("/metrics after reading the spoilt entry: got %q, want %s1", grepLines(m, decode), decode)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "cannot be decrypted or decoded") || !strings.Contains(logs, "user 3") {
		t.Errorf("logs: want a warning naming user 3; got\n%s", logs)
	}
	for _, secret := range []string{demo.Username, demo.Password} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold %q", secret)
		}
	}
}
