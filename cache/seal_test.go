package cache

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func key32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func mustSealer(t *testing.T, current []byte, previous ...[]byte) *Sealer {
	t.Helper()
	s, err := NewSealer(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealedEntries(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	body := []byte(`[{"id":"1","registration_password":"rp-very-private"}]`)
	header := Header(nil).Add("X-Tenant-Note", "hdr-very-private")
	e := Entry{Status: 200, ContentType: "application/json", Header: header, Body: body, Stored: time.Unix(1700000000, 0)}
	k, other := Key{"1", "scope-a"}, Key{"1", "scope-b"}

	a := NewRedis(client, RedisOptions{Sealer: mustSealer(t, key32('a'))})
	if err := a.Set(ctx, k, e, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	got, _, ok, err := a.Get(ctx, k)
	if err != nil || !ok || !bytes.Equal(got.Body, body) || !bytes.Equal(got.Header, header) {
		t.Fatalf("sealed round trip: got ok=%v err=%v body %q header %q", ok, err, got.Body, got.Header)
	}
	raw, _ := mr.Get(a.entryKey(k))
	for _, secret := range []string{"rp-very-private", "application/json", "hdr-very-private", "X-Tenant-Note"} {
		if strings.Contains(raw, secret) {
			t.Errorf("the value in Redis holds %q in the clear", secret)
		}
	}

	// A value copied to another scope's key does not open there.
	mr.Set(a.entryKey(other), raw)
	if _, _, ok, _ := a.Get(ctx, other); ok {
		t.Error("a sealed value moved to another scope's key was accepted")
	}
	// Another key cannot read it; after rotation the old key still can.
	if _, _, ok, _ := NewRedis(client, RedisOptions{Sealer: mustSealer(t, key32('b'))}).Get(ctx, k); ok {
		t.Error("a store with a different key read the entry")
	}
	rotated := NewRedis(client, RedisOptions{Sealer: mustSealer(t, key32('b'), key32('a'))})
	if _, _, ok, _ := rotated.Get(ctx, k); !ok {
		t.Error("after rotation (new key, old key kept for reading) the old entry was a miss")
	}
	// Plain entries are misses for a sealing store, and the other way round.
	plain := NewRedis(client, RedisOptions{})
	if _, _, ok, _ := plain.Get(ctx, k); ok {
		t.Error("a store without the key read a sealed entry")
	}
	if err := plain.Set(ctx, other, e, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := a.Get(ctx, other); ok {
		t.Error("a sealing store accepted an entry written in the clear")
	}
}

func TestParseKey(t *testing.T) {
	raw := key32('k')
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"raw", raw, true},
		{"base64", []byte(base64.StdEncoding.EncodeToString(raw)), true},
		{"base64 with newline", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), true},
		{"unpadded base64", []byte(base64.RawStdEncoding.EncodeToString(raw)), true},
		{"31 bytes", raw[:31], false},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(raw[:16])), false},
		{"text", []byte("not a key"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseKey: got err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(k, raw) {
				t.Errorf("ParseKey: got %x, want %x", k, raw)
			}
		})
	}
	if _, err := NewSealer(key32('a')[:16]); err == nil {
		t.Error("NewSealer with a 16-byte key: got nil error")
	}
}
