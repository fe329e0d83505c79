package cache

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/userproxy/userproxy/internal/testkit"
)

// TestSetRedisLogger: a line go-redis logs (here: a pool that cannot dial)
// comes out as a JSON record of the slog logger, not as plain text.
func TestSetRedisLogger(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nobody listens there now

	var buf testkit.SyncBuffer
	SetRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(logging.Enable) // go-redis's own logger again, for the tests after this one

	client, err := NewUniversalClient("redis://"+dead, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := NewRedis(client, RedisOptions{}).Ping(ctx); err == nil {
		t.Fatalf("Ping %s: got no error, want one (nobody listens)", dead)
	}
	testkit.WaitFor(t, 10*time.Second, "go-redis to log the failed dial", func() bool {
		return strings.Contains(buf.String(), "failed to dial")
	})
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("got a line that is not JSON: %q", line)
		}
		if rec["level"] != "WARN" || rec["component"] != "go-redis" || rec["msg"] == "" {
			t.Errorf("got record %v, want level WARN, component go-redis and the line as msg", rec)
		}
	}
}
