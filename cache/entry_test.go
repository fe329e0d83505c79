package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
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
	case !bytes.Equal(got.Header, want.Header):
		return "header differs"
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
		{"with header", Entry{Status: 200, ContentType: "application/json", Header: sampleHeader(), Body: sampleBody,
			Stored: stored, Expires: stored.Add(30 * time.Second)}, 4},
		{"header without body", Entry{Status: 404, Header: Header(nil).Add("Retry-After", "5")}, 0},
		{"header at its limits", Entry{Status: 200, Header: maxHeader(), Body: []byte("[]")}, 1},
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
			if tt.e.Header == nil && got.Header != nil {
				t.Errorf("got header %q, want nil", got.Header)
			}
		})
	}
}

// maxHeader is a header of exactly MaxHeaderFields fields, MaxHeaderBytes
// bytes in all.
func maxHeader() Header {
	h := manyFields(MaxHeaderFields - 1)
	// 1 byte of name length, the name, 2 bytes of value length, the value
	fill := MaxHeaderBytes - len(h) - 1 - len("X-Last") - 2
	return h.Add("X-Last", strings.Repeat("v", fill))
}

// manyFields is a header of n small fields.
func manyFields(n int) Header {
	var h Header
	for range n {
		h = h.Add("X-A", "b")
	}
	return h
}

// bigHeader is a header of one field, n bytes in all (n from 136 to 16 KiB
// and a bit).
func bigHeader(t testing.TB, n int) Header {
	t.Helper()
	// 1 byte of name length, the name, 2 bytes of value length, the value
	h := Header(nil).Add("X-Big", strings.Repeat("v", n-1-len("X-Big")-2))
	if len(h) != n {
		t.Fatalf("test bug: got a header of %d bytes, want %d", len(h), n)
	}
	return h
}

// withHeaderBlock is a valid entry up to its header block, then declared
// (0: len(block)) as the block's length, block, and body.
func withHeaderBlock(declared uint64, block []byte, body string) []byte {
	if declared == 0 {
		declared = uint64(len(block))
	}
	b := []byte{entryVersion, 0, 0xc8, 0x01, 0, 0, 0, 0}
	b = binary.AppendUvarint(b, declared)
	b = append(b, block...)
	return append(b, body...)
}

// appendV2 is AppendBinary as it was at entry version 2, before the header
// block: what replicas of the previous release write during a rollout.
func appendV2(e Entry, gen uint64) []byte {
	dst := []byte{2}
	dst = binary.AppendUvarint(dst, gen)
	dst = binary.AppendUvarint(dst, uint64(e.Status))
	dst = binary.AppendVarint(dst, unixNano(e.Stored))
	dst = binary.AppendVarint(dst, unixNano(e.Expires))
	dst = binary.AppendUvarint(dst, uint64(max(e.Fetch, 0)))
	dst = binary.AppendUvarint(dst, uint64(len(e.ContentType)))
	dst = append(dst, e.ContentType...)
	return append(dst, e.Body...)
}

func TestDecodeEntryReadsVersion2(t *testing.T) {
	stored := time.Unix(1700000000, 5)
	tests := []struct {
		name string
		b    []byte
		want Entry
		gen  uint64
	}{
		{
			// Written by the release before this one (a literal, so that a
			// change to appendV2 cannot hide a change of what decodes).
			"literal", []byte("\x02\x07\xc8\x01\x00\x00\x00\x10application/json[]"),
			Entry{Status: 200, ContentType: "application/json", Body: []byte("[]")}, 7,
		},
		{
			"json 200", appendV2(Entry{Status: 200, ContentType: "application/json", Body: sampleBody,
				Stored: stored, Expires: stored.Add(time.Minute), Fetch: time.Millisecond}, 3),
			Entry{Status: 200, ContentType: "application/json", Body: sampleBody,
				Stored: stored, Expires: stored.Add(time.Minute), Fetch: time.Millisecond}, 3,
		},
		{
			// A body that would pass as a header block must stay the body.
			"body that starts like a header", appendV2(Entry{Status: 404, Body: []byte{1, 'a', 1, 'b'}}, 0),
			Entry{Status: 404, Body: []byte{1, 'a', 1, 'b'}}, 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gen, err := DecodeEntry(tt.b)
			if err != nil {
				t.Fatalf("DecodeEntry: got error %v, want nil", err)
			}
			if gen != tt.gen {
				t.Errorf("got gen %d, want %d", gen, tt.gen)
			}
			if d := diffEntry(got, tt.want); d != "" {
				t.Errorf("%s: got %+v, want %+v", d, got, tt.want)
			}
			if got.Header != nil {
				t.Errorf("got header %q, want nil", got.Header)
			}
			// Rewritten by this release, it is a version 3 entry.
			if b := got.AppendBinary(nil, gen); b[0] != entryVersion {
				t.Errorf("re-encoded: got version %d, want %d", b[0], entryVersion)
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
	valid := Entry{Status: 200, ContentType: "application/json", Header: Header(nil).Add("Etag", `"x"`), Body: []byte("{}"),
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
		{"version 1", []byte{1, 0, 0xc8, 0x01, 0, 0, 0}},
		{"header length missing", []byte{entryVersion, 0, 0xc8, 0x01, 0, 0, 0, 0}},
		{"header length overlong varint", append([]byte{entryVersion, 0, 0xc8, 0x01, 0, 0, 0, 0},
			bytes.Repeat([]byte{0x80}, 11)...)},
		{"header longer than input", withHeaderBlock(8, []byte{5, 'E', 't', 'a', 'g'}, "")},
		{"huge header length", withHeaderBlock(math.MaxUint64, nil, "")},
		// In the cases below the block's length is right and a body
		// follows, which a field must not reach into.
		{"header field name past its block", withHeaderBlock(3, []byte{5, 'E', 't'}, "[]")},
		{"header field without value length", withHeaderBlock(2, []byte{1, 'E'}, "\x01[]")},
		{"header field value past its block", withHeaderBlock(4, []byte{1, 'E', 4, 'a'}, "[]")},
		{"header field with huge length", withHeaderBlock(10, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "[]")},
		{"header field with overlong length", withHeaderBlock(11, bytes.Repeat([]byte{0x80}, 11), "[]")},
		{"header with a stray byte", withHeaderBlock(0, append(Header(nil).Add("Etag", "x"), 0), "[]")},
		{"header of 65 fields", withHeaderBlock(0, manyFields(MaxHeaderFields+1), "[]")},
		{"header of 16 KiB and a byte", withHeaderBlock(0, bigHeader(t, MaxHeaderBytes+1), "[]")},
	}
	// Every cut before the body starts is truncated (the header block too).
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

func TestDecodeEntryHeaderAliasesInput(t *testing.T) {
	b := Entry{Status: 200, Header: Header(nil).Add("Etag", "abc"), Body: []byte("{}")}.AppendBinary(nil, 0)
	e, _, err := DecodeEntry(b)
	if err != nil {
		t.Fatalf("DecodeEntry: %v", err)
	}
	b[len(b)-len("{}")-1] = 'X' // the last byte of the header block
	if v, _ := e.Header.Get("Etag"); string(v) != "abX" {
		t.Errorf("after changing the input, got Etag %q, want %q (Header aliases the input)", v, "abX")
	}
	if got, want := cap(e.Header), len(e.Header); got != want {
		t.Errorf("got header cap %d, want %d (Add must not overwrite the body)", got, want)
	}
	more := e.Header.Add("Vary", "Accept")
	if string(e.Body) != "{}" {
		t.Errorf("after Add on the decoded header, got body %q, want %q", e.Body, "{}")
	}
	if got := fields(more); len(got) != 2 {
		t.Errorf("after Add, got fields %q, want 2", got)
	}
}

func TestDecodeEntryAllocations(t *testing.T) {
	tests := []struct {
		ct     string
		header Header
		want   float64
	}{
		{"application/json", nil, 0},
		{"application/json", sampleHeader(), 0}, // the header aliases the input
		{"application/json; charset=utf-8", nil, 0},
		{"", nil, 0},
		{"text/plain", nil, 1}, // an uncommon content type costs its string
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d header bytes", tt.ct, len(tt.header)), func(t *testing.T) {
			b := Entry{Status: 200, ContentType: tt.ct, Header: tt.header, Body: sampleBody, Stored: time.Now()}.AppendBinary(nil, 9)
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
		{Entry{Status: 200, ContentType: "application/json", Header: sampleHeader(), Body: sampleBody, Stored: now}, 3},
		{Entry{Status: 200, Header: Header(nil).Add("", "").Add("Etag", "x").Add("Etag", "y")}, 1},
	} {
		f.Add(seed.e.AppendBinary(nil, seed.gen))
		f.Add(appendV2(seed.e, seed.gen))
	}
	f.Add([]byte{})
	f.Add([]byte{entryVersion})
	f.Add([]byte{entryVersion, 0, 0xc8, 0x01, 0, 0, 0, 0, 0})
	f.Add([]byte{entryVersionV2, 0, 0xc8, 0x01, 0, 0, 0, 0})
	f.Add(withHeaderBlock(4, []byte{1, 'E', 4, 'a'}, "[]"))
	f.Add(withHeaderBlock(0, manyFields(MaxHeaderFields+1), "[]"))
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
		if len(e.Body)+len(e.Header) > len(b) {
			t.Fatalf("got body of %d bytes and header of %d from %d bytes of input", len(e.Body), len(e.Header), len(b))
		}
		if cap(e.Header) != len(e.Header) || (e.Header != nil && len(e.Header) == 0) {
			t.Fatalf("got header of len %d, cap %d, nil %v: want cap = len, and nil when empty",
				len(e.Header), cap(e.Header), e.Header == nil)
		}
		// A header DecodeEntry accepts is read to its end by All, within
		// the limits, and Get finds each name's first value.
		n, size := 0, 0
		first := map[string]string{}
		for name, value := range e.Header.All() {
			n++
			size += len(name) + len(value)
			if _, seen := first[string(name)]; !seen {
				first[string(name)] = string(value)
			}
		}
		if n > MaxHeaderFields || len(e.Header) > MaxHeaderBytes {
			t.Fatalf("got a header of %d fields, %d bytes, past the limits", n, len(e.Header))
		}
		if size > len(e.Header) || (n == 0) != (len(e.Header) == 0) {
			t.Fatalf("All saw %d fields, %d bytes, in a header of %d bytes", n, size, len(e.Header))
		}
		for name, want := range first {
			if got, ok := e.Header.Get(name); !ok || string(got) != want {
				t.Fatalf("Get(%q): got %q, %v, want %q, true", name, got, ok, want)
			}
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
