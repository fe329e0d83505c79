package cache

import (
	"bytes"
	"strings"
	"testing"
)

// sampleHeader is what the proxy stores for a typical upstream answer.
func sampleHeader() Header {
	return Header(nil).
		Add("Cache-Control", "private, max-age=60").
		Add("Etag", `"5f0c"`).
		Add("Vary", "Authorization").
		Add("Vary", "Accept-Encoding").
		Add("X-Empty", "")
}

// fields collects h's fields as "name: value" strings.
func fields(h Header) []string {
	var got []string
	for name, value := range h.All() {
		got = append(got, string(name)+": "+string(value))
	}
	return got
}

func TestHeaderAllInOrder(t *testing.T) {
	got := fields(sampleHeader())
	want := []string{"Cache-Control: private, max-age=60", `Etag: "5f0c"`, "Vary: Authorization", "Vary: Accept-Encoding", "X-Empty: "}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got fields %q, want %q", got, want)
	}
}

func TestHeaderAllStopsWhenAsked(t *testing.T) {
	n := 0
	for range sampleHeader().All() {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("got %d iterations, want 2", n)
	}
}

func TestHeaderGet(t *testing.T) {
	h := sampleHeader()
	tests := []struct {
		name   string
		want   string
		wantOK bool
	}{
		{"Etag", `"5f0c"`, true},
		{"Vary", "Authorization", true}, // the first of two
		{"X-Empty", "", true},
		{"ETag", "", false}, // names match exactly: callers store canonical names
		{"Content-Length", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := h.Get(tt.name)
			if ok != tt.wantOK || string(got) != tt.want {
				t.Errorf("got %q, %v, want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestHeaderNil(t *testing.T) {
	var h Header
	for name, value := range h.All() {
		t.Errorf("got field %q: %q from a nil Header, want none", name, value)
	}
	if v, ok := h.Get("Etag"); ok || v != nil {
		t.Errorf("Get on a nil Header: got %q, %v, want nil, false", v, ok)
	}
	if err := h.check(); err != nil {
		t.Errorf("check: got %v, want nil", err)
	}
}

// TestHeaderMalformed shows that All and Get are safe even on bytes that
// neither Add built nor DecodeEntry accepted: they stop at the bad field.
func TestHeaderMalformed(t *testing.T) {
	good := Header(nil).Add("Etag", "x")
	tests := []struct {
		name       string
		h          Header
		wantFields int
	}{
		{"name past the end", Header{5, 'a'}, 0},
		{"value length missing", Header{1, 'a'}, 0},
		{"value past the end", Header{1, 'a', 9, 'b'}, 0},
		{"overlong varint", Header(bytes.Repeat([]byte{0xff}, 11)), 0},
		{"huge length", Header{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'}, 0},
		{"good field, then garbage", append(good[:len(good):len(good)], 0x80), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := len(fields(tt.h)); got != tt.wantFields {
				t.Errorf("got %d fields, want %d", got, tt.wantFields)
			}
			if _, ok := tt.h.Get("b"); ok {
				t.Errorf("Get found a field in malformed bytes")
			}
			if err := tt.h.check(); err == nil {
				t.Errorf("check: got nil, want an error")
			}
		})
	}
}

func TestHeaderLimits(t *testing.T) {
	tests := []struct {
		name   string
		h      Header
		wantOK bool
	}{
		{"64 fields", manyFields(64), true},
		{"65 fields", manyFields(65), false},
		{"16 KiB", bigHeader(t, 16<<10), true},
		{"16 KiB and a byte", bigHeader(t, 16<<10+1), false},
		{"64 fields of 16 KiB", maxHeader(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.h.check(); (err == nil) != tt.wantOK {
				t.Errorf("check: got %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestHeaderAllocations(t *testing.T) {
	h := sampleHeader()
	got := testing.AllocsPerRun(100, func() {
		n := 0
		for name, value := range h.All() {
			n += len(name) + len(value)
		}
		if n == 0 {
			t.Fatal("no fields")
		}
		if _, ok := h.Get("Vary"); !ok {
			t.Fatal("no Vary")
		}
		if _, ok := h.Get("Missing"); ok {
			t.Fatal("found Missing")
		}
	})
	if got != 0 {
		t.Errorf("got %v allocations per All and Get, want 0", got)
	}
}
