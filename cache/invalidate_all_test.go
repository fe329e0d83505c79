package cache

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// allInvalidator is a store that can drop everything.
type allInvalidator interface {
	store
	InvalidateAll(ctx context.Context) error
}

func TestInvalidateAll(t *testing.T) {
	kinds := []struct {
		name string
		new  func(t *testing.T) allInvalidator
	}{
		{"memory", func(t *testing.T) allInvalidator { return NewMemory(MemoryOptions{}) }},
	}
	// On a Cluster, InvalidateAll must walk every master.
	for _, be := range append(backends, clusterBackend, sentinelBackend) {
		kinds = append(kinds, struct {
			name string
			new  func(t *testing.T) allInvalidator
		}{be.name, func(t *testing.T) allInvalidator {
			b := be.start(t)
			return NewRedis(b.client, RedisOptions{Prefix: b.prefix})
		}})
	}
	for _, b := range kinds {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.new(t)
			e := Entry{Status: 200, ContentType: "application/json", Body: []byte(`[{"id":"1"}]`)}
			// Enough users that a SCAN takes several steps.
			const users = 1200
			for i := range users {
				id := strconv.Itoa(i)
				if i%2 == 0 { // half of them have been invalidated before
					if err := s.Invalidate(ctx, id); err != nil {
						t.Fatal(err)
					}
				}
				for _, scope := range []string{"a", "b"} {
					k := Key{id, scope}
					_, gen, _, err := s.Get(ctx, k)
					if err != nil {
						t.Fatal(err)
					}
					if err := s.Set(ctx, k, e, time.Hour, gen); err != nil {
						t.Fatalf("Set %v: %v", k, err)
					}
				}
			}
			// A fill in progress for user 7 read its generation before the purge.
			_, staleGen, _, _ := s.Get(ctx, Key{"7", "c"})

			if err := s.InvalidateAll(ctx); err != nil {
				t.Fatalf("InvalidateAll: %v", err)
			}
			for i := range users {
				for _, scope := range []string{"a", "b"} {
					k := Key{strconv.Itoa(i), scope}
					if _, _, ok, err := s.Get(ctx, k); ok || err != nil {
						t.Fatalf("Get %v after InvalidateAll: ok=%v err=%v, want a miss", k, ok, err)
					}
				}
			}
			if err := s.Set(ctx, Key{"7", "c"}, e, time.Hour, staleGen); !errors.Is(err, ErrGenerationChanged) {
				t.Errorf("Set with a generation read before InvalidateAll: got %v, want ErrGenerationChanged", err)
			}
			// The store works normally afterwards.
			k := Key{"7", "a"}
			_, gen, _, _ := s.Get(ctx, k)
			if err := s.Set(ctx, k, e, time.Hour, gen); err != nil {
				t.Fatalf("Set after InvalidateAll: %v", err)
			}
			if _, _, ok, _ := s.Get(ctx, k); !ok {
				t.Error("Get after a fresh Set: miss, want a hit")
			}
		})
	}
}
