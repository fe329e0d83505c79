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

// BenchmarkRedisGetBatched is a lookup through the read batcher (the
// default, -redis-autopipeline) with nothing else on the wire: a cold
// miss's lookup.
func BenchmarkRedisGetBatched(b *testing.B) {
	be := newRealRedis(b)
	benchGet(b, NewRedis(be.client, RedisOptions{AutoPipeline: true}))
}

// BenchmarkRedisGetBatchedParallel is the same under concurrent lookups
// (GOMAXPROCS goroutines × -cpu), which share pipelines.
func BenchmarkRedisGetBatchedParallel(b *testing.B) {
	be := newRealRedis(b)
	s := NewRedis(be.client, RedisOptions{AutoPipeline: true})
	ctx := context.Background()
	k := Key{ID: "42", Scope: "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee"}
	if err := s.Set(ctx, k, benchEntry(), time.Hour, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, ok, err := s.Get(ctx, k); err != nil || !ok {
				b.Errorf("got ok=%v err=%v, want a hit", ok, err)
				return
			}
		}
	})
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
