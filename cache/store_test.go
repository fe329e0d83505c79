package cache

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// store is the contract both stores implement (the proxy declares the same
// interface on its side).
type store interface {
	Get(ctx context.Context, k Key) (e Entry, gen uint64, ok bool, err error)
	Set(ctx context.Context, k Key, e Entry, ttl time.Duration, gen uint64) error
	Invalidate(ctx context.Context, id string) error
	Ping(ctx context.Context) error
}

var (
	_ store = (*Memory)(nil)
	_ store = (*Redis)(nil)
)

// fixture is one fresh store under test plus the levers the shared suite
// needs that the store contract does not offer.
type fixture struct {
	store store
	// ttl is a TTL that expire can get past: long with a fake clock,
	// short (but well above a round trip) on a real Redis.
	ttl time.Duration
	// expire returns once k, stored with f.ttl, has expired: it moves a fake
	// clock forward or waits for a real Redis to drop the key.
	expire func(t *testing.T, k Key)
	// putRaw writes b where k's entry lives; nil for stores that keep
	// decoded entries (Memory), which skips the tests that need it.
	putRaw func(t *testing.T, k Key, b []byte)
}

// testStore runs the behaviour every store must share.
func testStore(t *testing.T, newFixture func(t *testing.T) fixture) {
	ctx := context.Background()
	stored := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	user := Entry{Status: 200, ContentType: "application/json", Body: sampleBody,
		Stored: stored, Expires: stored.Add(30 * time.Second)}
	k := Key{ID: "42", Scope: "5f0c0ffee"}

	t.Run("miss", func(t *testing.T) {
		f := newFixture(t)
		mustMiss(t, f.store, k, 0)
	})

	t.Run("hit round trip", func(t *testing.T) {
		tests := []struct {
			name string
			e    Entry
		}{
			{"json user", user},
			{"negative 404", Entry{Status: 404, ContentType: "application/json",
				Body: []byte(`{"error":"no such user"}`), Stored: stored, Expires: stored.Add(5 * time.Second)}},
			{"empty body, no content type", Entry{Status: 200, Stored: stored}},
			{"binary body", Entry{Status: 200, ContentType: "application/octet-stream", Body: []byte{0, 0xff, '\r', '\n', 0}}},
			{"large body", Entry{Status: 200, ContentType: "application/json", Body: bytes.Repeat([]byte(`{"a":"b"},`), 100_000)}},
			{"with header", Entry{Status: 200, ContentType: "application/json", Header: sampleHeader(), Body: sampleBody,
				Stored: stored, Expires: stored.Add(30 * time.Second)}},
			{"header, no body", Entry{Status: 404, Header: Header(nil).Add("Retry-After", "5"), Stored: stored}},
			{"header at its limits", Entry{Status: 200, Header: maxHeader(), Body: []byte("[]")}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFixture(t)
				mustSet(t, f.store, k, tt.e, f.ttl, 0)
				got := mustHit(t, f.store, k, 0)
				if d := diffEntry(got, tt.e); d != "" {
					t.Errorf("%s: got %+v, want %+v", d, got, tt.e)
				}
				if tt.e.Header == nil && got.Header != nil {
					t.Errorf("got header %q, want nil", got.Header)
				}
			})
		}
	})

	t.Run("Set copies the header", func(t *testing.T) {
		// As for the body: the caller may reuse its buffer after Set.
		f := newFixture(t)
		in := Entry{Status: 200, Header: Header(nil).Add("Etag", "abc"), Body: []byte("{}")}
		mustSet(t, f.store, k, in, f.ttl, 0)
		in.Header[len(in.Header)-1] = 'X'
		if v, _ := mustHit(t, f.store, k, 0).Header.Get("Etag"); string(v) != "abc" {
			t.Errorf("got Etag %q, want %q: the store kept the caller's buffer", v, "abc")
		}
	})

	t.Run("Add to a hit's header leaves the stored one alone", func(t *testing.T) {
		// Stores that share what Get returns must not let an append
		// (Header.Add) write into memory the next hit sees.
		f := newFixture(t)
		mustSet(t, f.store, k, Entry{Status: 200, Header: Header(nil).Add("Etag", "abc")}, f.ttl, 0)
		a := mustHit(t, f.store, k, 0).Header.Add("Age", "1")
		b := mustHit(t, f.store, k, 0).Header.Add("Age", "2")
		if got := fields(a); len(got) != 2 || got[1] != "Age: 1" {
			t.Errorf("got fields %q after the first Add, want Etag and Age: 1", got)
		}
		if got := fields(b); len(got) != 2 || got[1] != "Age: 2" {
			t.Errorf("got fields %q after the second Add, want Etag and Age: 2", got)
		}
		if got := fields(mustHit(t, f.store, k, 0).Header); len(got) != 1 {
			t.Errorf("got stored fields %q, want only Etag", got)
		}
	})

	t.Run("header past its limits is refused", func(t *testing.T) {
		f := newFixture(t)
		for _, h := range []Header{manyFields(MaxHeaderFields + 1), bigHeader(t, MaxHeaderBytes+1), {1, 'a'}} {
			err := f.store.Set(ctx, k, Entry{Status: 200, Header: h}, f.ttl, 0)
			if err == nil || errors.Is(err, ErrGenerationChanged) {
				t.Errorf("Set with a header of %d bytes: got %v, want an error", len(h), err)
			}
			mustMiss(t, f.store, k, 0)
		}
	})

	t.Run("Set copies the body", func(t *testing.T) {
		// Get's Body is read-only for callers (in-process stores share it
		// to keep the hit path free of copies), but Set must not keep the
		// caller's buffer.
		f := newFixture(t)
		in := Entry{Status: 200, Body: []byte(`{"a":1}`)}
		mustSet(t, f.store, k, in, f.ttl, 0)
		in.Body[2] = 'X' // the caller reuses its buffer after Set
		if got := mustHit(t, f.store, k, 0); string(got.Body) != `{"a":1}` {
			t.Errorf("got body %q, want %q: the store kept the caller's buffer", got.Body, `{"a":1}`)
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		f := newFixture(t)
		mustSet(t, f.store, k, user, f.ttl, 0)
		newer := user
		newer.Body = []byte(`[{"id":"42","is_clockedin":"1"}]`)
		mustSet(t, f.store, k, newer, f.ttl, 0)
		if got := mustHit(t, f.store, k, 0); !bytes.Equal(got.Body, newer.Body) {
			t.Errorf("got body %q, want %q", got.Body, newer.Body)
		}
	})

	t.Run("ttl expiry", func(t *testing.T) {
		f := newFixture(t)
		mustSet(t, f.store, k, user, f.ttl, 0)
		mustHit(t, f.store, k, 0)
		f.expire(t, k)
		mustMiss(t, f.store, k, 0)
	})

	t.Run("ttl zero stores nothing", func(t *testing.T) {
		f := newFixture(t)
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := f.store.Set(ctx, k, user, ttl, 0); err != nil {
				t.Errorf("Set with ttl %v: got %v, want nil", ttl, err)
			}
		}
		mustMiss(t, f.store, k, 0)
	})

	t.Run("scope isolation", func(t *testing.T) {
		f := newFixture(t)
		a, b := Key{ID: "42", Scope: "aaaa"}, Key{ID: "42", Scope: "bbbb"}
		mustSet(t, f.store, a, user, f.ttl, 0)
		mustMiss(t, f.store, b, 0)
		other := Entry{Status: 200, Body: []byte(`[{"id":"42","email":"redacted"}]`)}
		mustSet(t, f.store, b, other, f.ttl, 0)
		if got := mustHit(t, f.store, a, 0); !bytes.Equal(got.Body, user.Body) {
			t.Errorf("scope a: got body %q, want %q", got.Body, user.Body)
		}
		if got := mustHit(t, f.store, b, 0); !bytes.Equal(got.Body, other.Body) {
			t.Errorf("scope b: got body %q, want %q", got.Body, other.Body)
		}
	})

	t.Run("invalidate drops every scope of one user", func(t *testing.T) {
		f := newFixture(t)
		scopes := []string{"aaaa", "bbbb", "cccc", ""}
		for _, s := range scopes {
			mustSet(t, f.store, Key{ID: "42", Scope: s}, user, f.ttl, 0)
		}
		bystander := Key{ID: "420", Scope: "aaaa"}
		mustSet(t, f.store, bystander, user, f.ttl, 0)

		if err := f.store.Invalidate(ctx, "42"); err != nil {
			t.Fatalf("Invalidate: got %v, want nil", err)
		}
		for _, s := range scopes {
			mustMiss(t, f.store, Key{ID: "42", Scope: s}, 1)
		}
		mustHit(t, f.store, bystander, 0)

		// The next fill, under the new generation, is stored again.
		mustSet(t, f.store, k, user, f.ttl, 1)
		mustHit(t, f.store, k, 1)
	})

	t.Run("invalidate unknown user", func(t *testing.T) {
		f := newFixture(t)
		for want := uint64(1); want <= 3; want++ {
			if err := f.store.Invalidate(ctx, "7"); err != nil {
				t.Fatalf("Invalidate: got %v, want nil", err)
			}
			mustMiss(t, f.store, Key{ID: "7", Scope: "aaaa"}, want)
		}
	})

	t.Run("stale set race", func(t *testing.T) {
		f := newFixture(t)
		// A fill reads the generation on its miss ...
		_, gen, _, err := f.store.Get(ctx, k)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		// ... a write through the proxy invalidates the user meanwhile ...
		if err := f.store.Invalidate(ctx, k.ID); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		// ... and the fill's now stale answer must not be stored.
		err = f.store.Set(ctx, k, user, f.ttl, gen)
		if !errors.Is(err, ErrGenerationChanged) {
			t.Fatalf("Set with the old generation: got %v, want ErrGenerationChanged", err)
		}
		mustMiss(t, f.store, k, gen+1)
	})

	t.Run("set with a generation never read", func(t *testing.T) {
		f := newFixture(t)
		if err := f.store.Set(ctx, k, user, f.ttl, 5); !errors.Is(err, ErrGenerationChanged) {
			t.Fatalf("got %v, want ErrGenerationChanged", err)
		}
		mustMiss(t, f.store, k, 0)
	})

	t.Run("invalid keys", func(t *testing.T) {
		f := newFixture(t)
		for _, bad := range []Key{{ID: ""}, {ID: "4{2}"}, {ID: "42}"}, {ID: "42", Scope: "gen"}, {ID: "42", Scope: "lease:x"}} {
			t.Run(bad.ID+"/"+bad.Scope, func(t *testing.T) {
				if _, _, _, err := f.store.Get(ctx, bad); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Get: got %v, want ErrInvalidKey", err)
				}
				if err := f.store.Set(ctx, bad, user, f.ttl, 0); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Set: got %v, want ErrInvalidKey", err)
				}
			})
		}
		if err := f.store.Invalidate(ctx, "{42}"); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Invalidate: got %v, want ErrInvalidKey", err)
		}
	})

	t.Run("garbage at the entry key is a miss", func(t *testing.T) {
		f := newFixture(t)
		if f.putRaw == nil {
			t.Skip("store keeps decoded entries")
		}
		tests := []struct {
			name string
			b    []byte
		}{
			{"empty", []byte{}},
			{"text", []byte("not an entry")},
			{"future version", append([]byte{entryVersion + 1}, user.AppendBinary(nil, 0)[1:]...)},
			{"truncated", user.AppendBinary(nil, 0)[:4]},
			{"malformed header block", withHeaderBlock(4, []byte{1, 'E', 4, 'a'}, "[]")},
			{"header of 65 fields", withHeaderBlock(0, manyFields(MaxHeaderFields+1), "[]")},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f.putRaw(t, k, tt.b)
				mustMiss(t, f.store, k, 0)
				// and it is overwritten by the next fill
				mustSet(t, f.store, k, user, f.ttl, 0)
				mustHit(t, f.store, k, 0)
			})
		}
	})

	t.Run("entry of the previous release (version 2) is a hit", func(t *testing.T) {
		f := newFixture(t)
		if f.putRaw == nil {
			t.Skip("store keeps decoded entries")
		}
		f.putRaw(t, k, appendV2(user, 0))
		got := mustHit(t, f.store, k, 0)
		if d := diffEntry(got, user); d != "" || got.Header != nil {
			t.Errorf("%s: got %+v, want %+v without a header", d, got, user)
		}
	})

	t.Run("entry of an older generation is a miss", func(t *testing.T) {
		f := newFixture(t)
		if f.putRaw == nil {
			t.Skip("store keeps decoded entries")
		}
		if err := f.store.Invalidate(ctx, k.ID); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		f.putRaw(t, k, user.AppendBinary(nil, 0))
		mustMiss(t, f.store, k, 1)
	})

	t.Run("ping", func(t *testing.T) {
		f := newFixture(t)
		if err := f.store.Ping(ctx); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
}

func mustSet(t *testing.T, s store, k Key, e Entry, ttl time.Duration, gen uint64) {
	t.Helper()
	if err := s.Set(context.Background(), k, e, ttl, gen); err != nil {
		t.Fatalf("Set(%+v, gen %d): got %v, want nil", k, gen, err)
	}
}

func mustHit(t *testing.T, s store, k Key, wantGen uint64) Entry {
	t.Helper()
	e, gen, ok, err := s.Get(context.Background(), k)
	if err != nil || !ok {
		t.Fatalf("Get(%+v): got ok=%v err=%v, want a hit", k, ok, err)
	}
	if gen != wantGen {
		t.Errorf("Get(%+v): got gen %d, want %d", k, gen, wantGen)
	}
	return e
}

func mustMiss(t *testing.T, s store, k Key, wantGen uint64) {
	t.Helper()
	e, gen, ok, err := s.Get(context.Background(), k)
	if err != nil || ok {
		t.Fatalf("Get(%+v): got ok=%v err=%v entry %+v, want a miss without error", k, ok, err, e)
	}
	if gen != wantGen {
		t.Errorf("Get(%+v): got gen %d, want %d", k, gen, wantGen)
	}
}
