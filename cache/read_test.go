package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
)

// TestSplitMGet: the raw reply to an MGET of two keys, in RESP2 and RESP3,
// is cut into its two values; anything else is not values.
func TestSplitMGet(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want [2]string // "<nil>": missing
		ok   bool
	}{
		{"both", "*2\r\n$1\r\n7\r\n$5\r\nhello\r\n", [2]string{"7", "hello"}, true},
		{"RESP3 nulls", "*2\r\n_\r\n_\r\n", [2]string{"<nil>", "<nil>"}, true},
		{"RESP2 nulls", "*2\r\n$-1\r\n$-1\r\n", [2]string{"<nil>", "<nil>"}, true},
		{"empty value", "*2\r\n_\r\n$0\r\n\r\n", [2]string{"<nil>", ""}, true},
		{"binary with CRLF inside", "*2\r\n$1\r\n0\r\n$4\r\n\r\n\r\n\r\n", [2]string{"0", "\r\n\r\n"}, true},
		{"error", "-MOVED 3999 127.0.0.1:6381\r\n", [2]string{}, false},
		{"blob error", "!3\r\nERR\r\n", [2]string{}, false},
		{"one value", "*1\r\n$1\r\n7\r\n", [2]string{}, false},
		{"three values", "*3\r\n_\r\n_\r\n_\r\n", [2]string{}, false},
		{"short value", "*2\r\n_\r\n$5\r\nhell\r\n", [2]string{}, false},
		{"value without CRLF", "*2\r\n_\r\n$5\r\nhelloXY", [2]string{}, false},
		{"trailing bytes", "*2\r\n_\r\n_\r\n+OK\r\n", [2]string{}, false},
		{"negative length", "*2\r\n_\r\n$-2\r\n", [2]string{}, false},
		{"empty", "", [2]string{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := splitMGet([]byte(tc.raw))
			if !tc.ok {
				if !errors.Is(err, errNotValues) {
					t.Errorf("got %q, %v; want an error wrapping errNotValues", vals, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %q", err, tc.want)
			}
			for i, v := range vals {
				got := "<nil>"
				if v != nil {
					got = string(v)
				}
				if got != tc.want[i] {
					t.Errorf("value %d: got %q, want %q", i, got, tc.want[i])
				}
			}
		})
	}
}

// TestRedisGetErrorReply: an error reply to the raw MGET is handed to
// go-redis's own MGet, whose error the caller gets (a redis.Error, here
// NOPERM), and the breaker counts the read as failed, once (the raw
// attempt is not counted: see newStoreBreaker).
func TestRedisGetErrorReply(t *testing.T) {
	srv := redistest.Start(t)
	admin, err := NewUniversalClient(srv.URL(), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nomget", "on", ">pw", "~*", "+@all", "-mget").Err(); err != nil {
		t.Fatal(err)
	}
	client, err := NewUniversalClient(strings.Replace(srv.URL(), "redis://", "redis://nomget:pw@", 1), ClientOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	for _, batched := range []bool{false, true} {
		var states []BreakerState
		r := NewRedis(client, RedisOptions{AutoPipeline: batched, Breaker: BreakerOptions{
			Failures: 2, OnStateChange: func(_, to BreakerState) { states = append(states, to) }}})
		for i := range 2 {
			_, _, ok, err := r.Get(ctx, Key{ID: "1", Scope: "s"})
			var rerr redis.Error
			if ok || !errors.As(err, &rerr) || !strings.Contains(err.Error(), "NOPERM") || errors.Is(err, errNotValues) {
				t.Errorf("batched %v, read %d: got ok=%v err=%v, want go-redis's NOPERM error", batched, i, ok, err)
			}
			// One failure per read: a breaker that opens on two opens
			// on the second.
			if want := i; len(states) != want || (want == 1 && states[0] != BreakerOpen) {
				t.Errorf("batched %v, after read %d: breaker went through %v, want %d transition(s) to open", batched, i, states, want)
			}
		}
	}
}
