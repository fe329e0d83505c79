package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userproxy/userproxy/metrics"
)

// corruptProbe wires a store's OnCorrupt as cmd/userproxy does, to a real
// metrics collector, and keeps the errors it was given.
type corruptProbe struct {
	m *metrics.Metrics

	mu   sync.Mutex // protects errs
	errs []error
}

func newCorruptProbe() *corruptProbe {
	return &corruptProbe{m: metrics.New(prometheus.NewRegistry())}
}

func (p *corruptProbe) onCorrupt(err error) {
	p.m.CacheErrors.WithLabelValues(metrics.OpDecode).Inc()
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

// decodeErrors is userproxy_cache_errors_total{op="decode"}.
func (p *corruptProbe) decodeErrors() float64 {
	return testutil.ToFloat64(p.m.CacheErrors.WithLabelValues(metrics.OpDecode))
}

// TestRedisReportsCorruptEntries reads bad entries through a real
// redis-server, on both read paths, and checks that each read is a miss
// (not an error) that moves userproxy_cache_errors_total{op="decode"} by one.
func TestRedisReportsCorruptEntries(t *testing.T) {
	ctx := context.Background()
	stored := time.Unix(1700000000, 0)
	e := Entry{Status: 200, ContentType: "application/json", Header: Header(nil).Add("Etag", `"1"`),
		Body: []byte(`[{"id":"42","email":"very-private@example.com"}]`), Stored: stored}
	k := Key{ID: "42", Scope: "5c09e5ec2e7"}

	tests := []struct {
		name   string
		sealed bool
		// spoil changes the raw value of a freshly stored entry.
		spoil func(raw []byte) []byte
	}{
		{"garbage", false, func([]byte) []byte { return []byte("garbage") }},
		{"empty", false, func([]byte) []byte { return nil }},
		{"newer version", false, func(raw []byte) []byte { raw[0] = entryVersion + 1; return raw }},
		{"malformed header block", false, func([]byte) []byte {
			return withHeaderBlock(4, []byte{1, 'E', 4, 'a'}, "[]")
		}},
		{"sealed, a ciphertext byte flipped", true, func(raw []byte) []byte { raw[len(raw)-1] ^= 1; return raw }},
		{"sealed, the key id flipped", true, func(raw []byte) []byte { raw[1] ^= 1; return raw }},
		{"sealed store, plain entry", true, func([]byte) []byte { return e.AppendBinary(nil, 0) }},
		{"plain store, sealed entry", false, func([]byte) []byte {
			return mustSealer(t, key32('a')).seal(e.AppendBinary(nil, 0), "userproxy:{42}:5c09e5ec2e7")
		}},
	}
	be := newRealRedis(t)
	for _, ap := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("autopipeline=%v/%s", ap, tt.name), func(t *testing.T) {
				if err := be.client.FlushDB(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				p := newCorruptProbe()
				opts := RedisOptions{AutoPipeline: ap, OnCorrupt: p.onCorrupt}
				if tt.sealed {
					opts.Sealer = mustSealer(t, key32('a'))
				}
				r := NewRedis(be.client, opts)
				mustSet(t, r, k, e, time.Minute, 0)
				raw, err := be.client.Get(ctx, r.entryKey(k)).Bytes()
				if err != nil {
					t.Fatal(err)
				}
				if err := be.client.Set(ctx, r.entryKey(k), tt.spoil(raw), time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
				if got := p.decodeErrors(); got != 0 {
					t.Fatalf("before the read: got %v decode errors, want 0", got)
				}

				mustMiss(t, r, k, 0)
				if got := p.decodeErrors(); got != 1 {
					t.Errorf("after reading the spoilt entry: got %v decode errors, want 1", got)
				}
				if len(p.errs) != 1 || !errors.Is(p.errs[0], ErrCorrupt) {
					t.Fatalf("got OnCorrupt errors %v, want one wrapping ErrCorrupt", p.errs)
				}
				msg := p.errs[0].Error()
				if !strings.Contains(msg, "user 42") {
					t.Errorf("got error %q, want it to name user 42", msg)
				}
				for _, secret := range []string{k.Scope, "very-private", "Etag"} {
					if strings.Contains(msg, secret) {
						t.Errorf("got error %q, which holds %q", msg, secret)
					}
				}

				// The next fill replaces it, and its hits report nothing.
				mustSet(t, r, k, e, time.Minute, 0)
				mustHit(t, r, k, 0)
				if got := p.decodeErrors(); got != 1 {
					t.Errorf("after a refill and a hit: got %v decode errors, want still 1", got)
				}
			})
		}
	}
}

// TestRedisFencedEntryIsNotCorrupt: an entry written before an Invalidate
// is still in Redis and is read, but it is the invalidation fence at work,
// not damage: no decode error.
func TestRedisFencedEntryIsNotCorrupt(t *testing.T) {
	ctx := context.Background()
	k := Key{ID: "42", Scope: "aa"}
	e := Entry{Status: 200, Header: Header(nil).Add("Etag", `"1"`), Body: []byte("[]")}
	be := newRealRedis(t)
	for _, ap := range []bool{false, true} {
		for _, sealed := range []bool{false, true} {
			t.Run(fmt.Sprintf("autopipeline=%v/sealed=%v", ap, sealed), func(t *testing.T) {
				if err := be.client.FlushDB(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				p := newCorruptProbe()
				opts := RedisOptions{AutoPipeline: ap, OnCorrupt: p.onCorrupt}
				if sealed {
					opts.Sealer = mustSealer(t, key32('a'))
				}
				r := NewRedis(be.client, opts)
				mustSet(t, r, k, e, time.Minute, 0)
				if err := r.Invalidate(ctx, k.ID); err != nil {
					t.Fatal(err)
				}
				if n, err := be.client.Exists(ctx, r.entryKey(k)).Result(); err != nil || n != 1 {
					t.Fatalf("got EXISTS %d err %v, want the old entry still in Redis", n, err)
				}
				mustMiss(t, r, k, 1)
				if got := p.decodeErrors(); got != 0 {
					t.Errorf("got %v decode errors for an entry of an older generation, want 0 (errors %v)", got, p.errs)
				}
			})
		}
	}
}

// TestRedisReportsCorruptEntriesInBatches: concurrent reads share
// pipelines (the batch worker's path, not only a lone read), and each bad
// entry among them is reported once.
func TestRedisReportsCorruptEntriesInBatches(t *testing.T) {
	ctx := context.Background()
	be := newRealRedis(t)
	p := newCorruptProbe()
	r := NewRedis(be.client, RedisOptions{AutoPipeline: true, OnCorrupt: p.onCorrupt})
	const n = 64
	for i := range n {
		k := Key{ID: fmt.Sprint(i), Scope: "s"}
		if err := be.client.Set(ctx, r.entryKey(k), "garbage", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _, ok, err := r.Get(ctx, Key{ID: fmt.Sprint(i), Scope: "s"})
			if ok || err != nil {
				t.Errorf("Get of a garbage entry: got ok=%v err=%v, want a miss without error", ok, err)
			}
		})
	}
	wg.Wait()
	if got := p.decodeErrors(); got != n {
		t.Errorf("got %v decode errors after %d reads of garbage, want %d", got, n, n)
	}
}

// TestTieredReportsCorruptEntries: the tier reads through its Redis store,
// so the store's OnCorrupt sees what the tier's reads find.
func TestTieredReportsCorruptEntries(t *testing.T) {
	ctx := context.Background()
	be := newRealRedis(t)
	p := newCorruptProbe()
	r := NewRedis(be.client, RedisOptions{OnCorrupt: p.onCorrupt})
	tier, err := NewTiered(r, L1Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := Key{ID: "42", Scope: "s"}
	if err := be.client.Set(ctx, r.entryKey(k), "garbage", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, tier, k, 0)
	if got := p.decodeErrors(); got != 1 {
		t.Errorf("got %v decode errors, want 1", got)
	}
}
