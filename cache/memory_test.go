package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// newFakeClock is the memory store tests' clock; it moves only when told to.
func newFakeClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
}

func TestMemoryStore(t *testing.T) {
	testStore(t, func(t *testing.T) fixture {
		clock := newFakeClock()
		const ttl = time.Minute
		return fixture{
			store: NewMemory(MemoryOptions{Now: clock.Now}),
			ttl:   ttl,
			expire: func(t *testing.T, _ Key) {
				clock.Advance(ttl)
			},
		}
	})
}

// itemSize is the size Memory charges for an item.
func itemSize(k Key, e Entry) int64 {
	return int64(len(e.Body)+len(e.Header)+len(e.ContentType)+len(k.ID)+len(k.Scope)) + itemOverhead
}

func TestMemoryEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	e := Entry{Status: 200, ContentType: "application/json", Body: make([]byte, 1000)}
	keys := []Key{{ID: "1", Scope: "s"}, {ID: "2", Scope: "s"}, {ID: "3", Scope: "s"}, {ID: "4", Scope: "s"}}
	size := itemSize(keys[0], e)
	m := NewMemory(MemoryOptions{MaxBytes: 3 * size, Now: newFakeClock().Now})

	for _, k := range keys[:3] {
		mustSet(t, m, k, e, time.Minute, 0)
	}
	if got, want := m.Bytes(), 3*size; got != want {
		t.Fatalf("got %d bytes with three items, want %d", got, want)
	}
	mustHit(t, m, keys[0], 0) // 1 is now the most recently used; 2 the least
	mustSet(t, m, keys[3], e, time.Minute, 0)

	tests := []struct {
		k    Key
		want bool
	}{{keys[0], true}, {keys[1], false}, {keys[2], true}, {keys[3], true}}
	for _, tt := range tests {
		t.Run(tt.k.ID, func(t *testing.T) {
			_, _, ok, err := m.Get(context.Background(), tt.k)
			if err != nil || ok != tt.want {
				t.Errorf("got ok=%v err=%v, want ok=%v", ok, err, tt.want)
			}
		})
	}
	if got, want := m.Len(), 3; got != want {
		t.Errorf("got Len %d, want %d", got, want)
	}
	if got, want := m.Bytes(), 3*size; got != want {
		t.Errorf("got Bytes %d, want %d", got, want)
	}
}

func TestMemoryOversizedItem(t *testing.T) {
	k := Key{ID: "42", Scope: "s"}
	small := Entry{Status: 200, Body: []byte("{}")}
	big := Entry{Status: 200, Body: make([]byte, 2048)}
	m := NewMemory(MemoryOptions{MaxBytes: 1024})

	mustSet(t, m, k, small, time.Minute, 0)
	if err := m.Set(context.Background(), k, big, time.Minute, 0); err != nil {
		t.Fatalf("Set of an item bigger than MaxBytes: got %v, want nil", err)
	}
	// The small entry is older than the answer that did not fit: drop it.
	mustMiss(t, m, k, 0)
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Errorf("got Len %d Bytes %d, want an empty store", m.Len(), m.Bytes())
	}
}

func TestMemoryCountsHeaderBytes(t *testing.T) {
	k := Key{ID: "42", Scope: "s"}
	bare := Entry{Status: 200, Body: []byte("{}")}
	withHeader := bare
	withHeader.Header = maxHeader() // 16 KiB: far more than the body
	m := NewMemory(MemoryOptions{MaxBytes: 8 << 10})

	mustSet(t, m, k, bare, time.Minute, 0)
	bareBytes := m.Bytes()
	// An item charged for its body alone would fit; with its header it does not.
	mustSet(t, m, k, withHeader, time.Minute, 0)
	mustMiss(t, m, k, 0)

	m = NewMemory(MemoryOptions{})
	mustSet(t, m, k, withHeader, time.Minute, 0)
	if got, want := m.Bytes(), bareBytes+int64(len(withHeader.Header)); got != want {
		t.Errorf("got Bytes %d with a header of %d bytes, want %d", got, len(withHeader.Header), want)
	}
}

func TestMemoryAccountingReturnsToZero(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now})
	e := Entry{Status: 200, Body: []byte(`[{"id":"1"}]`)}

	steps := []struct {
		name      string
		do        func(t *testing.T)
		wantLen   int
		wantBytes int64
	}{
		{"set two scopes", func(t *testing.T) {
			mustSet(t, m, Key{"1", "a"}, e, time.Minute, 0)
			mustSet(t, m, Key{"1", "b"}, e, time.Minute, 0)
		}, 2, 2 * itemSize(Key{"1", "a"}, e)},
		{"overwrite one", func(t *testing.T) {
			mustSet(t, m, Key{"1", "a"}, e, time.Minute, 0)
		}, 2, 2 * itemSize(Key{"1", "a"}, e)},
		{"invalidate", func(t *testing.T) {
			if err := m.Invalidate(ctx, "1"); err != nil {
				t.Fatal(err)
			}
		}, 0, 0},
		{"set and expire", func(t *testing.T) {
			mustSet(t, m, Key{"2", "a"}, e, time.Second, 0)
			clock.Advance(time.Second)
			mustMiss(t, m, Key{"2", "a"}, 0)
		}, 0, 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t)
			if got := m.Len(); got != s.wantLen {
				t.Errorf("got Len %d, want %d", got, s.wantLen)
			}
			if got := m.Bytes(); got != s.wantBytes {
				t.Errorf("got Bytes %d, want %d", got, s.wantBytes)
			}
		})
	}
}

func TestMemoryForgetsOldGenerations(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	const genTTL = time.Hour
	m := NewMemory(MemoryOptions{Now: clock.Now, GenerationTTL: genTTL})
	e := Entry{Status: 200, Body: []byte("[]")}

	for i := range 1000 {
		if err := m.Invalidate(ctx, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	// User "5" gets an item under its new generation: its record must stay
	// while the item lives, or the generation would be lost under it.
	_, gen5, _, _ := m.Get(ctx, Key{"5", "a"})
	if gen5 == 0 {
		t.Fatal("user 5's generation is 0 after an Invalidate")
	}
	mustSet(t, m, Key{"5", "a"}, e, 3*genTTL, gen5)
	if got, want := userRecords(m), 1000; got != want {
		t.Fatalf("got %d generation records, want %d", got, want)
	}

	clock.Advance(genTTL)
	if err := m.Invalidate(ctx, "new"); err != nil { // pruning is lazy, on Invalidate
		t.Fatal(err)
	}
	if got, want := userRecords(m), 2; got != want { // "new" and "5"
		t.Errorf("got %d generation records after GenerationTTL, want %d", got, want)
	}
	mustHit(t, m, Key{"5", "a"}, gen5)
	mustMiss(t, m, Key{"0", "a"}, 0) // forgotten: the generation restarted

	// Once its item is gone, user 5's old record goes too.
	clock.Advance(3 * genTTL)
	mustMiss(t, m, Key{"5", "a"}, 0)
	if got, want := userRecords(m), 1; got != want { // "new", not yet pruned
		t.Errorf("got %d generation records, want %d", got, want)
	}
}

func userRecords(m *Memory) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.users)
}

func TestMemoryGenerationRecordsOfIdleUsersDoNotPileUp(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now})
	e := Entry{Status: 200, Body: []byte("[]")}
	for i := range 100 {
		k := Key{ID: fmt.Sprint(i), Scope: "a"}
		mustSet(t, m, k, e, time.Second, 0)
	}
	clock.Advance(time.Second)
	for i := range 100 {
		mustMiss(t, m, Key{ID: fmt.Sprint(i), Scope: "a"}, 0)
	}
	if got := userRecords(m); got != 0 {
		t.Errorf("got %d records for users without items or generation, want 0", got)
	}
}

func TestMemoryConcurrentUse(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemoryOptions{MaxBytes: 20 * itemOverhead})
	e := Entry{Status: 200, Body: []byte(`[{"id":"1"}]`)}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := Key{ID: fmt.Sprint(i % 13), Scope: fmt.Sprint(w % 3)}
				_, gen, _, err := m.Get(ctx, k)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				if err := m.Set(ctx, k, e, time.Minute, gen); err != nil && !errors.Is(err, ErrGenerationChanged) {
					t.Errorf("Set: %v", err)
					return
				}
				if i%7 == 0 {
					if err := m.Invalidate(ctx, k.ID); err != nil {
						t.Errorf("Invalidate: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	// The books must balance: Bytes is the sum of what is in the LRU list,
	// every item is indexed under its user, and the bound holds.
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum int64
	for el := m.lru.Front(); el != nil; el = el.Next() {
		it := el.Value.(*memItem)
		sum += it.size
		if m.users[it.user.id] != it.user || it.user.items[it.scope] != el {
			t.Errorf("item %s/%s is not indexed under its user", it.user.id, it.scope)
		}
	}
	if sum != m.bytes {
		t.Errorf("got bytes %d, want the items' sum %d", m.bytes, sum)
	}
	if m.bytes > m.maxBytes {
		t.Errorf("got bytes %d, want at most MaxBytes %d", m.bytes, m.maxBytes)
	}
}

func TestNewMemoryDefaults(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	if m.maxBytes != 64<<20 {
		t.Errorf("got MaxBytes %d, want 64 MiB", m.maxBytes)
	}
	if m.genTTL != 24*time.Hour {
		t.Errorf("got GenerationTTL %v, want 24h", m.genTTL)
	}
	if m.now == nil {
		t.Errorf("got nil Now, want time.Now")
	}
}
