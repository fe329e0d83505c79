package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestUserIDIn: where a create's answer may name the new user.
func TestUserIDIn(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
		ok   bool
	}{
		{`{"id":"51","username":"x"}`, "51", true},
		{`[{"id":"51"}]`, "51", true},
		{`{"users":[{"id":"51"}]}`, "51", true},
		{`{"data":{"id":51}}`, "51", true},
		{`{"id":12345678901234567890}`, "12345678901234567890", true}, // past 2^53: digits kept
		{`{"ok":true,"user":{"id":"51"}}`, "", false},                 // two members: not a wrapper
		{`[]`, "", false},
		{`{"id":""}`, "", false},
		{`{"id":null}`, "", false},
		{`"51"`, "", false},
	} {
		var doc any
		dec := json.NewDecoder(strings.NewReader(tc.body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if got, ok := userIDIn(doc, true); got != tc.want || ok != tc.ok {
			t.Errorf("userIDIn(%s): got (%q, %v), want (%q, %v)", tc.body, got, ok, tc.want, tc.ok)
		}
	}
}
