package capacity

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/upstream/fakeupstream"
)

// typicalBody is the body the demo's fake upstream serves for user 1 of
// tenant acme: the seed's user object (21 string fields, desks, roles,
// groups), ~650 bytes.
func typicalBody(t *testing.T) []byte {
	t.Helper()
	h := fakeupstream.NewHandler(fakeupstream.Options{Users: 1})
	b, ok := h.User("acme", "1")
	if !ok {
		t.Fatal("fake upstream has no user 1 of acme")
	}
	return b
}

// largeBody is the typical body with 60 desks, 60 groups and 20 roles: a
// user who belongs to much of a large tenant, ~8 KiB.
func largeBody(t *testing.T) []byte {
	t.Helper()
	var users []map[string]any
	if err := json.Unmarshal(typicalBody(t), &users); err != nil || len(users) != 1 {
		t.Fatalf("typical body is not an array of one user: %v", err)
	}
	u := users[0]
	var desks, groups []map[string]string
	roles := map[string]string{}
	for i := range 60 {
		desks = append(desks, map[string]string{"id": strconv.Itoa(100 + i), "name": fmt.Sprintf("Desk %d, outbound sales team", i)})
		groups = append(groups, map[string]string{"id": strconv.Itoa(500 + i), "name": fmt.Sprintf("Group %d, shift and language", i)})
	}
	for i := range 20 {
		roles[strconv.Itoa(900+i)] = fmt.Sprintf("Role %d with a long name", i)
	}
	u["desks"], u["groups"], u["roles"] = desks, groups, roles
	b, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// etagOnly is what the proxy stores for the demo's fake upstream, which
// sends no end-to-end header fields: the ETag it derives from the body.
func etagOnly() cache.Header {
	return cache.Header(nil).Add("Etag", `"q1w2e3r4t5y6u7i8o9p0aZ"`)
}

// someHeaders is ~300 bytes of the end-to-end header fields a real API
// behind a CDN or gateway sends, which an entry keeps and replays.
func someHeaders() cache.Header {
	h := etagOnly()
	for _, f := range [][2]string{
		{"Cache-Control", "private, max-age=0, must-revalidate"},
		{"Last-Modified", "Sat, 05 Dec 2026 21:14:07 GMT"},
		{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
		{"Vary", "Accept-Encoding, Authorization"},
		{"X-Content-Type-Options", "nosniff"},
		{"X-Frame-Options", "SAMEORIGIN"},
		{"X-Ratelimit-Limit", "600"},
		{"X-Ratelimit-Remaining", "599"},
		{"X-Request-Id", "6f1c2a9e-84b1-4c57-9a0e-3d2b7c1e5f40"},
	} {
		h = h.Add(f[0], f[1])
	}
	return h
}

// usedMemory returns INFO memory's used_memory.
func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(t.Context(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(infoFields(info)["used_memory"], 10, 64)
	if err != nil {
		t.Fatalf("used_memory: %v", err)
	}
	return n
}

// scopeOf is a scope as the proxy makes them: 32 hex digits.
func scopeOf(i int) string { return fmt.Sprintf("%032x", 0x5eed0000+i) }

// TestMemory fills users x scopes entries through the real store, as the
// proxy's fills do, and reports MEMORY USAGE of an entry and a generation
// key and the growth of used_memory per entry.
func TestMemory(t *testing.T) {
	requireMeasure(t)
	const users, scopes = 10000, 3
	cases := []struct {
		name   string
		body   []byte
		header cache.Header
	}{
		{"typical: demo user, ETag only", typicalBody(t), etagOnly()},
		{"typical body, ~300 B of header fields", typicalBody(t), someHeaders()},
		{"large: ~8 KiB body, ~300 B of header fields", largeBody(t), someHeaders()},
	}
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	store := cache.NewRedis(c, cache.RedisOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for _, tc := range cases {
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := usedMemory(t, c)
		now := time.Now()
		e := cache.Entry{Status: 200, ContentType: "application/json", Body: tc.body, Header: tc.header,
			Stored: now, Expires: now.Add(time.Minute), Fetch: 23 * time.Millisecond}
		for u := range users {
			id := strconv.Itoa(1000000 + u)
			for s := range scopes {
				// -cache-ttl 60s + -stale-ttl 1h, as the proxy stores it.
				if err := store.Set(ctx, cache.Key{ID: id, Scope: scopeOf(s)}, e, time.Hour+time.Minute, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		after := usedMemory(t, c)
		// An invalidation makes the generation key a counter with a 24h TTL;
		// its size is the same.
		if err := store.Invalidate(ctx, "1000000"); err != nil {
			t.Fatal(err)
		}
		entryKey := "userproxy:{1000001}:" + scopeOf(0)
		raw, err := c.Get(ctx, entryKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		entryMem, err := c.MemoryUsage(ctx, entryKey, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		genMem, err := c.MemoryUsage(ctx, "userproxy:{1000001}:gen", 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		bumpedMem, err := c.MemoryUsage(ctx, "userproxy:{1000000}:gen", 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx, "keyspace").Result()
		if err != nil {
			t.Fatal(err)
		}
		perEntry := float64(after-before) / float64(users*scopes)
		t.Logf("%s: body %d B, header fields %d B, encoded value %d B; MEMORY USAGE entry %d B, generation key %d B (after an invalidation %d B); used_memory +%d B for %d users x %d scopes = %.0f B per (user, scope), gen key share included; keyspace %s",
			tc.name, len(tc.body), len(tc.header), len(raw), entryMem, genMem, bumpedMem,
			after-before, users, scopes, perEntry, strings.TrimSpace(infoFields(info)["db0"]))
	}
}
