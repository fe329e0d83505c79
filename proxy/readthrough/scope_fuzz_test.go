package readthrough

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/upstream"
)

// Run locally with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzParseBasic$' -fuzztime 30s ./proxy/readthrough
//
// Seed corpora live in testdata/fuzz/<FuzzName>/ and run with plain go test.

// credentialErrors are parseBasic's only errors: fixed texts, so no part of
// the header can ever appear in one.
var credentialErrors = []error{ErrNoCredentials, ErrNotBasic, ErrCredentialsTooBig, ErrNotBase64, ErrNoColon, ErrEmptyUsername, ErrManyCredentials}

func FuzzParseBasic(f *testing.F) {
	b64 := base64.StdEncoding.EncodeToString
	for _, s := range []string{
		"",
		"Basic " + b64([]byte("demo:demo-password")),
		"basic " + b64([]byte("demo:demo-password")),
		"BASIC  " + b64([]byte("demo:pa:ss")) + " ",
		"Basic " + b64([]byte("demo")),
		"Basic " + b64([]byte(":pw")),
		"Basic " + b64([]byte("user:")),
		"Basic " + b64([]byte("\x00:\xff")),
		"Basic !!!",
		"Basic",
		"Basic ",
		"Bearer abc",
		"Digest username=\"demo\"",
		"Basic " + b64([]byte("demo:"+strings.Repeat("x", 760))),
		"Basic ZGVtbzpkZW1v\r\nLXBhc3N3b3Jk",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		cred, err := parseBasic(h)
		if err != nil {
			known := false
			for _, e := range credentialErrors {
				known = known || err == e
			}
			// Every error is one of the fixed values, never a wrapped or
			// formatted one: that is what guarantees no part of the
			// header (a password) can reach a client or a log through it.
			if !known {
				t.Fatalf("parseBasic(%q): error %q is not one of the fixed credential errors", h, err)
			}
			if cred != (upstream.Credentials{}) {
				t.Fatalf("parseBasic(%q): error %v with credentials %+v, want none", h, err, cred)
			}
			return
		}
		if cred.Username == "" || strings.Contains(cred.Username, ":") {
			t.Fatalf("parseBasic(%q): username %q, want non-empty and without a colon", h, cred.Username)
		}
		again, err := parseBasic("Basic " + b64([]byte(cred.Username+":"+cred.Password)))
		if err != nil || again != cred {
			t.Fatalf("parseBasic(%q) = %+v, but its re-encoding parses to %+v, %v", h, cred, again, err)
		}
	})
}
