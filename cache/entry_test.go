package cache

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// sampleBody is a realistic upstream answer (an array of user objects).
var sampleBody = []byte(`[{"id":"42","username":"agent42","email":"a@example.com","is_active":"1",` +
	`"is_clockedin":"0","desks":[],"roles":{},"groups":[]}]`)

// diffEntry reports how got and want differ, or "" when they are equal.
// Times are compared with Equal: the encoding keeps instants, not locations.
func diffEntry(got, want Entry) string {
	switch {
	case got.Status != want.Status:
		return "status differs"
	case got.ContentType != want.ContentType:
		return "content type differs"
	case !bytes.Equal(got.Body, want.Body):
		return "body differs"
	case !got.Stored.Equal(want.Stored):
		return "stored time differs"
	case !got.Expires.Equal(want.Expires):
		return "expiry time differs"
	case got.Fetch != want.Fetch:
		return "fetch time differs"
	}
	return ""
}

func TestEntryRoundTrip(t *testing.T) {
	stored := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	tests := []struct {
		name string
		e    Entry
		gen  uint64
	}{
		{"json 200", Entry{Status: 200, ContentType: "application/json", Body: sampleBody,
			Stored: stored, Expires: stored.Add(30 * time.Second), Fetch: 23 * time.Millisecond}, 0},
		{"negative 404 with empty body", Entry{Status: 404, ContentType: "application/json; charset=utf-8",
			Stored: stored, Expires: stored.Add(5 * time.Second)}, 7},
		{"no content type", Entry{Status: 200, Body: []byte("{}"), Stored: stored, Expires: stored}, 1},
		{"uncommon content type", Entry{Status: 200, ContentType: "application/vnd.api+json", Body: []byte("[]")}, 3},
		{"binary body", Entry{Status: 299, ContentType: "x", Body: []byte{0, 1, 0xff, 0xfe, '\n'}}, 1 << 40},
		{"zero times", Entry{Status: 100, Body: []byte("x")}, 0},
		{"max generation", Entry{Status: 999, Stored: stored}, math.MaxUint64},
		{"times before 1970", Entry{Status: 200, Stored: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC),
			Expires: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.e.AppendBinary(nil, tt.gen)
			if b[0] != entryVersion {
				t.Errorf("got version byte %d, want %d", b[0], entryVersion)
			}
			if got, limit := len(b), tt.e.encodedLen(); got > limit {
				t.Errorf("got encoded length %d, want at most encodedLen %d", got, limit)
			}
			got, gen, err := DecodeEntry(b)
			if err != nil {
				t.Fatalf("DecodeEntry: got error %v, want nil", err)
			}
			if gen != tt.gen {
				t.Errorf("got gen %d, want %d", gen, tt.gen)
			}
			if d := diffEntry(got, tt.e); d != "" {
				t.Errorf("%s: got %+v, want %+v", d, got, tt.e)
			}
			if got.Body == nil {
				t.Errorf("got nil body, want an empty non-nil slice")
			}
		})
	}
}

func TestEntryAppendBinaryAppends(t *testing.T) {
	prefix := []byte("keep")
	b := Entry{Status: 200, Body: []byte("{}")}.AppendBinary(prefix, 1)
	if !bytes.HasPrefix(b, []byte("keep")) {
		t.Fatalf("got %q, want it to start with the dst bytes %q", b, "keep")
	}
	if _, _, err := DecodeEntry(b[len(prefix):]); err != nil {
		t.Errorf("decoding the appended part: got %v, want nil", err)
	}
}

func TestDecodeEntryRejectsBadInput(t *testing.T) {
	valid := Entry{Status: 200, ContentType: "application/json", Body: []byte("{}"),
		Stored: time.Unix(1700000000, 0), Expires: time.Unix(1700000030, 0)}.AppendBinary(nil, 3)
	tests := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version 0", []byte{0, 0, 200, 1, 0, 0, 0}},
		{"next version", append([]byte{entryVersion + 1}, valid[1:]...)},
		{"text", []byte(`{"id":"42"}`)},
		{"only the version", []byte{entryVersion}},
		{"overlong generation varint", append([]byte{entryVersion}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"status 0", []byte{entryVersion, 0, 0, 0, 0, 0}},
		{"status 99", []byte{entryVersion, 0, 99, 0, 0, 0}},
		{"status 1000", []byte{entryVersion, 0, 0xe8, 0x07, 0, 0, 0}},
		{"content type longer than input", []byte{entryVersion, 0, 0xc8, 0x01, 0, 0, 5, 'a', 'b'}},
		{"huge content type length", append([]byte{entryVersion, 0, 0xc8, 0x01, 0, 0},
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
	}
	// Every cut before the body starts is truncated.
	bodyStart := len(valid) - len("{}")
	for n := 1; n < bodyStart; n++ {
		tests = append(tests, struct {
			name string
			b    []byte
		}{fmt.Sprintf("truncated to %d bytes", n), valid[:n]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, gen, err := DecodeEntry(tt.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got error %v, want one wrapping ErrCorrupt", err)
			}
			if gen != 0 || e.Status != 0 || e.Body != nil {
				t.Errorf("got entry %+v gen %d with the error, want zero values", e, gen)
			}
		})
	}
}

func TestDecodeEntryBodyAliasesInput(t *testing.T) {
	b := Entry{Status: 200, Body: []byte("abc")}.AppendBinary(nil, 0)
	b = append(b, "zzzz"...)[:len(b)] // spare capacity after the body
	e, _, err := DecodeEntry(b)
	if err != nil {
		t.Fatalf("DecodeEntry: %v", err)
	}
	b[len(b)-3] = 'X'
	if got, want := string(e.Body), "Xbc"; got != want {
		t.Errorf("after changing the input, got body %q, want %q (Body aliases the input)", got, want)
	}
	if got, want := cap(e.Body), len(e.Body); got != want {
		t.Errorf("got body cap %d, want %d (appending must not reach past the input's length)", got, want)
	}
}

func TestDecodeEntryAllocations(t *testing.T) {
	tests := []struct {
		ct   string
		want float64
	}{
		{"application/json", 0},
		{"application/json; charset=utf-8", 0},
		{"", 0},
		{"text/plain", 1}, // an uncommon content type costs its string
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			b := Entry{Status: 200, ContentType: tt.ct, Body: sampleBody, Stored: time.Now()}.AppendBinary(nil, 9)
			got := testing.AllocsPerRun(100, func() {
				if _, _, err := DecodeEntry(b); err != nil {
					t.Fatal(err)
				}
			})
			if got != tt.want {
				t.Errorf("got %v allocations per decode, want %v", got, tt.want)
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	now := time.Unix(1700000000, 123)
	for _, seed := range []struct {
		e   Entry
		gen uint64
	}{
		{Entry{Status: 200, ContentType: "application/json", Body: sampleBody, Stored: now, Expires: now.Add(time.Minute)}, 0},
		{Entry{Status: 404, ContentType: "application/json", Body: []byte(`{"error":"not found"}`), Stored: now}, 12},
		{Entry{Status: 200}, math.MaxUint64},
	} {
		f.Add(seed.e.AppendBinary(nil, seed.gen))
	}
	f.Add([]byte{})
	f.Add([]byte{entryVersion})
	f.Add([]byte{2, 0, 0xc8, 0x01, 0, 0, 0})
	f.Add([]byte(`[{"id":"1"}]`))

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		e, gen, err := DecodeEntry(b)
		if !bytes.Equal(b, in) {
			t.Fatalf("DecodeEntry modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got error %v, want one wrapping ErrCorrupt", err)
			}
			return
		}
		if len(e.Body) > len(b) {
			t.Fatalf("got body of %d bytes from %d bytes of input", len(e.Body), len(b))
		}
		// Valid input round-trips: re-encoding and decoding gives the same entry.
		again := e.AppendBinary(nil, gen)
		e2, gen2, err := DecodeEntry(again)
		if err != nil {
			t.Fatalf("decoding the re-encoded entry: got %v, want nil", err)
		}
		if gen2 != gen {
			t.Errorf("got gen %d after a round trip, want %d", gen2, gen)
		}
		if d := diffEntry(e2, e); d != "" {
			t.Errorf("%s after a round trip: got %+v, want %+v", d, e2, e)
		}
		// The re-encoding is canonical, so encoding once more is a fixed point.
		if third := e2.AppendBinary(nil, gen2); !bytes.Equal(third, again) {
			t.Errorf("got %x encoding the round-tripped entry, want %x", third, again)
		}
	})
}
