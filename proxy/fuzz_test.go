package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
)

// Run locally with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzValidID$' -fuzztime 30s ./proxy
//	go test -run '^$' -fuzz '^FuzzServeUserPath$' -fuzztime 30s ./proxy
//
// Seed corpora live in testdata/fuzz/<FuzzName>/ and run with plain go test.

// credentialErrors are the engine's only credential errors: fixed texts,
// so no part of the header can ever appear in one.
var credentialErrors = []error{readthrough.ErrNoCredentials, readthrough.ErrNotBasic, readthrough.ErrCredentialsTooBig,
	readthrough.ErrNotBase64, readthrough.ErrNoColon, readthrough.ErrEmptyUsername, readthrough.ErrManyCredentials}

// idPattern is the documented default id rule.
var idPattern = regexp.MustCompile(`^[0-9]{1,20}$`)

func FuzzValidID(f *testing.F) {
	for _, s := range []string{
		"", "1", "42", "01", "000", "0", "a-b_C", strings.Repeat("9", 64), strings.Repeat("9", 65),
		"..", "%2e", "a/b", "1\x00", "1\n", "caf\u00e9", "\uff11", "\xff", " 1", "1 ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := numericID(id), idPattern.MatchString(id); got != want {
			t.Fatalf("numericID(%q): got %v, want %v (as %s)", id, got, want, idPattern)
		}
		if !numericID(id) {
			return
		}
		// The canonical spelling: the same number, no leading zero, and
		// canonical already.
		c := canonicalID(id)
		if c == "" || (len(c) > 1 && c[0] == '0') || strings.TrimLeft(id, "0") != strings.TrimLeft(c, "0") || canonicalID(c) != c {
			t.Fatalf("canonicalID(%q) = %q, want the same number without leading zeros", id, c)
		}
	})
}

// fuzzUpstream is an in-process Upstream: a fixed JSON 200 for id "1", a
// JSON 404 for anything else. It records ids that the rule should never
// have let through.
type fuzzUpstream struct {
	calls atomic.Int64
	bad   atomic.Value // string: the last id that fails validID
}

var (
	fuzzUserBody     = []byte(`[{"id":"1","username":"fuzz.user1","first_name":"Fuzz"}]`)
	fuzzNotFoundBody = []byte(`{"error":"user not found"}`)
)

func (u *fuzzUpstream) Fetch(_ context.Context, id string, _ upstream.Credentials) (*upstream.Response, error) {
	u.calls.Add(1)
	if !numericID(id) || canonicalID(id) != id {
		u.bad.Store(id)
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	if id == "1" {
		return &upstream.Response{Status: http.StatusOK, Header: hdr, Body: bytes.Clone(fuzzUserBody)}, nil
	}
	return &upstream.Response{Status: http.StatusNotFound, Header: hdr, Body: bytes.Clone(fuzzNotFoundBody)}, nil
}

func (u *fuzzUpstream) RetryAfter() time.Duration { return time.Second }

// FuzzServeUserPath drives the whole handler with a fuzzed id segment and
// one or two fuzzed Authorization headers (auth2 empty: one header).
func FuzzServeUserPath(f *testing.F) {
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	demo := b64("demo:demo-password")
	for _, s := range []struct{ seg, auth, auth2 string }{
		{"1", demo, ""},
		{"2", demo, ""},
		{"1", "", ""},
		{"1", "Bearer x", ""},
		{"1", "Basic !!!", ""},
		{"1", demo, demo},
		{"1", demo, "Basic !!!"},
		{"%31", b64("demo:pw"), ""},
		{"..", b64("demo:pw"), ""},
		{"%2e%2e", b64("demo:pw"), ""},
		{"a%2Fb", b64("demo:pw"), ""},
		{"%00", b64("demo:pw"), ""},
		{"caf%C3%A9", b64("demo:pw"), ""},
		{"caf\u00e9", b64("demo:pw"), ""},
		{"1?x=y", b64("demo:pw"), ""},
		{"1/2", b64("demo:pw"), ""},
		{"", b64("demo:pw"), ""},
		{strings.Repeat("1", 65), b64("demo:pw"), ""},
		{"1", b64(":pw"), ""},
		{"1", b64("demo"), ""},
		{"1", "Basic " + strings.Repeat("A", 2000), ""},
	} {
		f.Add(s.seg, s.auth, s.auth2)
	}
	up := &fuzzUpstream{}
	eng, err := readthrough.New(readthrough.Options{Store: cache.NewMemory(cache.MemoryOptions{}), Upstream: up, KeySecret: []byte("fuzz-secret-0123456789")})
	if err != nil {
		f.Fatalf("readthrough.New: %v", err)
	}
	f.Cleanup(eng.Close)
	h, err := New(Options{Engine: eng})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	f.Fuzz(func(t *testing.T, seg, auth, auth2 string) {
		target := usersPrefix + seg
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // not a request target net/http would hand to the handler
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL, req.RequestURI = u, target
		switch {
		case auth2 != "":
			req.Header["Authorization"] = []string{auth, auth2}
		case auth != "":
			req.Header["Authorization"] = []string{auth}
		}
		calls := up.calls.Load()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		body := rec.Body.Bytes()
		switch rec.Code {
		case http.StatusOK:
			if !bytes.Equal(body, fuzzUserBody) {
				t.Fatalf("GET %q: 200 with body %q, want the fixed user body", target, body)
			}
		case http.StatusNotFound:
			if !json.Valid(body) {
				t.Fatalf("GET %q: 404 with a body that is not JSON: %q", target, body)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			var e struct {
				Error  string `json:"error"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Status != rec.Code {
				t.Fatalf("GET %q: %d with body %q, want {\"error\":...,\"status\":%d}", target, rec.Code, body, rec.Code)
			}
			if up.calls.Load() != calls {
				t.Fatalf("GET %q: refused with %d but the upstream was called", target, rec.Code)
			}
			// The message is a fixed text, so it cannot echo the header.
			if !fixedMessage(rec.Code, e.Error) {
				t.Fatalf("GET %q: %d with message %q, want one of the fixed messages", target, rec.Code, e.Error)
			}
		default:
			t.Fatalf("GET %q (Authorization %.40q, %.40q): status %d, want 200, 400, 401 or 404", target, auth, auth2, rec.Code)
		}
		if auth2 != "" && rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnauthorized {
			t.Fatalf("GET %q with two Authorization headers: got %d, want it refused (400 or 401)", target, rec.Code)
		}
		if bad, _ := up.bad.Load().(string); bad != "" {
			t.Fatalf("the upstream was asked for id %q, which the id rule refuses", bad)
		}
	})
}

// fixedMessage reports whether msg is one of the fixed texts the proxy
// answers a refused id (400) or refused credentials (401) with.
func fixedMessage(status int, msg string) bool {
	if status == http.StatusBadRequest {
		return msg == "invalid user id"
	}
	for _, e := range credentialErrors {
		if msg == e.Error() {
			return true
		}
	}
	return false
}
