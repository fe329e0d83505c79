package cache

import (
	"context"
	"testing"
	"time"
)

func benchEntry() Entry {
	now := time.Now()
	return Entry{Status: 200, ContentType: "application/json", Body: sampleBody, Stored: now, Expires: now.Add(time.Minute)}
}

func benchGet(b *testing.B, s store) {
	ctx := context.Background()
	k := Key{ID: "42", Scope: "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee"}
	if err := s.Set(ctx, k, benchEntry(), time.Hour, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok, err := s.Get(ctx, k); err != nil || !ok {
			b.Fatalf("got ok=%v err=%v, want a hit", ok, err)
		}
	}
}

func BenchmarkMemoryGet(b *testing.B) {
	benchGet(b, NewMemory(MemoryOptions{}))
}

func BenchmarkRedisGet(b *testing.B) {
	be := newRealRedis(b) // skips without a redis-server
	benchGet(b, NewRedis(be.client, RedisOptions{}))
}

func BenchmarkDecodeEntry(b *testing.B) {
	raw := benchEntry().AppendBinary(nil, 3)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, err := DecodeEntry(raw); err != nil {
			b.Fatal(err)
		}
	}
}
