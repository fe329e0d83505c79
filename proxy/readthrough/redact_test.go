package readthrough

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	fields := map[string]bool{"registration_password": true, "secret": true}
	for _, tc := range []struct{ name, in, want string }{
		{"seed shape",
			`[{"id":"1","registration_password":"rp1","is_active":"1","desks":[{"id":"3","name":"Sales"}],"roles":{"2":"Agent"}}]`,
			`[{"id":"1","is_active":"1","desks":[{"id":"3","name":"Sales"}],"roles":{"2":"Agent"}}]`},
		{"wrapped and nested", `{"users":[{"id":"1","secret":{"a":1},"x":[{"secret":2,"k":3}]}]}`, `{"users":[{"id":"1","x":[{"k":3}]}]}`},
		{"first and last member", `{"secret":1,"a":2,"registration_password":"z"}`, `{"a":2}`},
		{"only member", `{"secret":"x"}`, `{}`},
		{"numbers keep their text", `{"a":1.50e3,"b":-0,"secret":1}`, `{"a":1.50e3,"b":-0}`},
		{"escapes in values kept", `{"a":"caf\u00e9 \"q\"","secret":"s"}`, `{"a":"caf\u00e9 \"q\""}`},
		{"not an object", `"registration_password"`, `"registration_password"`},
		{"empty containers", `[[],{}]`, `[[],{}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := redact([]byte(tc.in), fields)
			if err != nil {
				t.Fatalf("redact: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not valid JSON: %s", got)
			}
		})
	}
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte(`[{"id":"1","registration_password":"rp1","desks":[{"id":"3"}]}]`))
	f.Add([]byte(`{"users":[{"secret":{"a":[1,2,{"secret":3}]}}]}`))
	fields := map[string]bool{"registration_password": true, "secret": true}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		got, err := redact(b, fields)
		if err != nil {
			t.Fatalf("redact(%q): %v", b, err)
		}
		if !json.Valid(got) {
			t.Fatalf("redact(%q) = %q: not JSON", b, got)
		}
		var v any
		json.Unmarshal(got, &v)
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if fields[k] {
						t.Fatalf("redact(%q) kept member %q", b, k)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(v)
	})
}

// TestRedactDeepDocument: a deeply nested body (JSON allows 10,000 levels)
// is walked in one pass; the previous recursive version re-read every
// container once per level, which a fuzzer found too slow.
func TestRedactDeepDocument(t *testing.T) {
	const depth = 9000
	in := strings.Repeat(`{"secret":1,"a":`, depth) + "[]" + strings.Repeat("}", depth)
	want := strings.Repeat(`{"a":`, depth) + "[]" + strings.Repeat("}", depth)
	got, err := redact([]byte(in), map[string]bool{"secret": true})
	if err != nil {
		t.Fatalf("redact: %v", err)
	}
	if string(got) != want {
		t.Errorf("got %d bytes, want the %d-byte document without its secret members", len(got), len(want))
	}
}
