package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantMsg string // substring of the error
	}{
		{"empty base", Options{}, "base url is required"},
		{"ftp scheme", Options{BaseURL: "ftp://h"}, "scheme must be http or https"},
		{"no scheme", Options{BaseURL: "acme.td.commpeak.com"}, "scheme must be http or https"},
		{"no host", Options{BaseURL: "http://"}, "host is required"},
		{"opaque", Options{BaseURL: "http:h"}, "host is required"},
		{"query", Options{BaseURL: "http://h/?a=1"}, "must not have a query"},
		{"empty query", Options{BaseURL: "http://h?"}, "must not have a query"},
		{"fragment", Options{BaseURL: "http://h#top"}, "must not have a fragment"},
		{"userinfo", Options{BaseURL: "https://demo:s3cret@h"}, "must not contain credentials"},
		{"unparsable", Options{BaseURL: "http://demo:s3cret@h:port"}, "parsing base url"},
		{"negative timeout", Options{BaseURL: "http://h", Timeout: -time.Second}, "timeout"},
		{"negative max body", Options{BaseURL: "http://h", MaxBodyBytes: -1}, "max body bytes"},
		{"negative interval", Options{BaseURL: "http://h", Breaker: BreakerOptions{Interval: -2}}, "interval"},
		{"negative open timeout", Options{BaseURL: "http://h", Breaker: BreakerOptions{OpenTimeout: -1}}, "open timeout"},
		{"inject without username", Options{BaseURL: "http://h", Inject: &Credentials{Password: "s3cret"}}, "username"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if err == nil {
				t.Fatalf("New: got client %v, want error containing %q", c, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("New: got error %q, want it to contain %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("New: got error %q, want no password in it", err)
			}
		})
	}
}

func TestFetchBuildsURL(t *testing.T) {
	var (
		mu  sync.Mutex // protects got
		got *http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(context.Background())
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name, base, id, wantURI string
	}{
		{"plain", srv.URL, "42", "/api/users/42"},
		{"trailing slash on base", srv.URL + "/", "42", "/api/users/42"},
		{"path prefix", srv.URL + "/tenant/v1/", "7", "/tenant/v1/api/users/7"},
		{"slash escaped", srv.URL, "a/b", "/api/users/a%2Fb"},
		{"dot dot escaped into one segment", srv.URL, "../admin", "/api/users/..%2Fadmin"},
		{"space", srv.URL, "a b", "/api/users/a%20b"},
		{"query chars", srv.URL, "1?x=2#f", "/api/users/1%3Fx=2%23f"},
		{"unicode", srv.URL, "ü", "/api/users/%C3%BC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, Options{BaseURL: tt.base, UserAgent: "userproxy-test"})
			resp, err := c.Fetch(t.Context(), tt.id, Credentials{Username: "u", Password: "p"})
			if err != nil {
				t.Fatalf("Fetch: got error %v, want nil", err)
			}
			if resp.Status != http.StatusOK {
				t.Fatalf("Fetch: got status %d, want 200", resp.Status)
			}
			mu.Lock()
			r := got
			mu.Unlock()
			if r.Method != http.MethodGet {
				t.Errorf("method: got %s, want GET", r.Method)
			}
			if r.RequestURI != tt.wantURI {
				t.Errorf("request URI: got %q, want %q", r.RequestURI, tt.wantURI)
			}
			if got, want := r.Header.Get("Accept"), "application/json"; got != want {
				t.Errorf("Accept: got %q, want %q", got, want)
			}
			if got, want := r.Header.Get("User-Agent"), "userproxy-test"; got != want {
				t.Errorf("User-Agent: got %q, want %q", got, want)
			}
		})
	}
}

func TestFetchCredentialsAndStatus(t *testing.T) {
	fake := newFake(t)
	creds := upstreamtest.DemoCredentials()
	acme := Credentials{Username: creds[0].Username, Password: creds[0].Password}
	globex := Credentials{Username: creds[1].Username, Password: creds[1].Password}

	tests := []struct {
		name       string
		inject     *Credentials
		cred       Credentials
		id         string
		wantStatus int
		wantTenant string // non-empty: body must be this tenant's user id
	}{
		{"passthrough acme", nil, acme, "1", http.StatusOK, creds[0].Tenant},
		{"passthrough globex", nil, globex, "1", http.StatusOK, creds[1].Tenant},
		{"inject overrides caller", &acme, globex, "2", http.StatusOK, creds[0].Tenant},
		{"inject with no caller credentials", &acme, Credentials{}, "3", http.StatusOK, creds[0].Tenant},
		{"not found passes through", nil, acme, "999999", http.StatusNotFound, ""},
		{"wrong password passes through", nil, Credentials{Username: acme.Username, Password: "wrong"}, "1", http.StatusUnauthorized, ""},
		{"no credentials sends none", nil, Credentials{}, "1", http.StatusUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, Options{BaseURL: fake.URL, Inject: tt.inject})
			resp, err := c.Fetch(t.Context(), tt.id, tt.cred)
			if err != nil {
				t.Fatalf("Fetch: got error %v, want nil", err)
			}
			if resp.Status != tt.wantStatus {
				t.Errorf("status: got %d, want %d (body %s)", resp.Status, tt.wantStatus, resp.Body)
			}
			if tt.wantTenant != "" {
				want, ok := fake.User(tt.wantTenant, tt.id)
				if !ok {
					t.Fatalf("fake has no user %s in tenant %s", tt.id, tt.wantTenant)
				}
				if !bytes.Equal(resp.Body, want) {
					t.Errorf("body: got %s, want %s", resp.Body, want)
				}
			}
			if tt.wantStatus == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("WWW-Authenticate: got none on 401, want the upstream's challenge")
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", got)
			}
			if got, want := c.State().String(), "closed"; got != want {
				t.Errorf("breaker: got %s, want %s", got, want)
			}
		})
	}
}

// TestFetchKeepsEveryHeader: Response.Header holds every field the upstream
// sent; which the proxy stores and replays is the engine's business (it
// drops hop-by-hop fields and Set-Cookie).
func TestFetchKeepsEveryHeader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "max-age=30")
		h.Set("ETag", `"v1"`)
		h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		h.Set("Retry-After", "5")
		h.Add("WWW-Authenticate", `Basic realm="a"`)
		h.Add("WWW-Authenticate", `Digest realm="a"`)
		h.Set("Set-Cookie", "session=secret")
		h.Set("X-Internal", "1")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`[]`))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, Options{BaseURL: srv.URL})

	resp, err := c.Fetch(t.Context(), "1", Credentials{})
	if err != nil {
		t.Fatalf("Fetch: got error %v, want nil", err)
	}
	want := http.Header{
		"Content-Type":     {"application/json"},
		"Cache-Control":    {"max-age=30"},
		"Etag":             {`"v1"`},
		"Last-Modified":    {"Mon, 02 Jan 2006 15:04:05 GMT"},
		"Retry-After":      {"5"},
		"Www-Authenticate": {`Basic realm="a"`, `Digest realm="a"`},
		"Set-Cookie":       {"session=secret"},
		"X-Internal":       {"1"},
		"Content-Length":   {"2"},
	}
	for k, v := range want {
		if got := resp.Header[k]; strings.Join(got, "|") != strings.Join(v, "|") {
			t.Errorf("header %s: got %q, want %q", k, got, v)
		}
	}
}

func TestFetchDoesNotFollowRedirects(t *testing.T) {
	var elsewhere int64
	var mu sync.Mutex // protects elsewhere
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere++
		mu.Unlock()
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, Options{BaseURL: srv.URL})

	resp, err := c.Fetch(t.Context(), "1", Credentials{Username: "demo", Password: "s3cret"})
	if err != nil {
		t.Fatalf("Fetch: got error %v, want nil", err)
	}
	if resp.Status != http.StatusFound {
		t.Errorf("status: got %d, want %d", resp.Status, http.StatusFound)
	}
	mu.Lock()
	defer mu.Unlock()
	if elsewhere != 0 {
		t.Errorf("redirect target: got %d requests, want 0", elsewhere)
	}
}

func TestFetchReturnsMalformedBodyAsIs(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultMalformed)
	c := newClient(t, Options{BaseURL: fake.URL})

	resp, err := c.Fetch(t.Context(), "1", demo(t))
	if err != nil {
		t.Fatalf("Fetch: got error %v, want nil", err)
	}
	if resp.Status != http.StatusOK {
		t.Errorf("status: got %d, want 200", resp.Status)
	}
	if len(resp.Body) == 0 || json.Valid(resp.Body) {
		t.Errorf("body: got %q, want the fake's non-empty invalid JSON unchanged", resp.Body)
	}
}

func TestFetchBodyLimit(t *testing.T) {
	const limit = 64
	tests := []struct {
		name    string
		size    int
		chunked bool // no Content-Length: only the read limit can catch it
		wantErr bool
	}{
		{"empty", 0, false, false},
		{"at limit", limit, false, false},
		{"at limit chunked", limit, true, false},
		{"one over", limit + 1, false, true},
		{"one over chunked", limit + 1, true, true},
		{"far over chunked", 100 * limit, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("x"), tt.size)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				}
				w.WriteHeader(http.StatusOK)
				if tt.chunked {
					http.NewResponseController(w).Flush() // commits to chunked encoding
				}
				_, _ = w.Write(body)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, Options{BaseURL: srv.URL, MaxBodyBytes: limit, Breaker: BreakerOptions{ConsecutiveFailures: 1}})

			resp, err := c.Fetch(t.Context(), "1", Credentials{})
			if tt.wantErr {
				if !errors.Is(err, ErrBodyTooLarge) {
					t.Fatalf("Fetch: got (%v, %v), want ErrBodyTooLarge", resp, err)
				}
				if got := c.State().String(); got != "open" {
					t.Errorf("breaker after too large body: got %s, want open (counts as failure)", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: got error %v, want nil", err)
			}
			if !bytes.Equal(resp.Body, body) {
				t.Errorf("body: got %d bytes, want %d", len(resp.Body), len(body))
			}
			if resp.Body == nil {
				t.Errorf("body: got nil, want non-nil")
			}
		})
	}
}

func TestFetchOversizeFromFake(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultOversize)
	c := newClient(t, Options{BaseURL: fake.URL, Breaker: BreakerOptions{ConsecutiveFailures: 1}})

	resp, err := c.Fetch(t.Context(), "1", demo(t))
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("Fetch: got (%v, %v), want ErrBodyTooLarge", resp, err)
	}
	if resp != nil {
		t.Errorf("Fetch: got response %v with error, want nil", resp)
	}
	if got := c.State().String(); got != "open" {
		t.Errorf("breaker: got %s, want open (too large counts as failure)", got)
	}
}

func TestFetchSlowBodyTimesOut(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultSlowBody)
	const timeout = 150 * time.Millisecond
	c := newClient(t, Options{BaseURL: fake.URL, Timeout: timeout})

	start := time.Now()
	resp, err := c.Fetch(t.Context(), "1", demo(t))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch: got (%v, %v), want ErrTimeout wrapping context.DeadlineExceeded", resp, err)
	}
	if elapsed > timeout+time.Second {
		t.Errorf("Fetch took %v, want about the %v timeout", elapsed, timeout)
	}
}

func TestFetchErrorsNameIDNotSecrets(t *testing.T) {
	fake := newFake(t)
	base := fake.URL
	fake.Close() // nothing listens there any more: connection refused
	c := newClient(t, Options{BaseURL: base})

	_, err := c.Fetch(t.Context(), "77", Credentials{Username: "demo", Password: "s3cret"})
	if err == nil {
		t.Fatal("Fetch to a closed server: got nil error, want a connection error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "fetching user 77: ") {
		t.Errorf("error: got %q, want it to start with %q", msg, "fetching user 77: ")
	}
	for _, secret := range []string{"s3cret", "demo", "/api/users"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error: got %q, want no %q in it", msg, secret)
		}
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrBreakerOpen) {
		t.Errorf("error: got %v, want a plain connection error", err)
	}

	if _, err := c.Fetch(t.Context(), "", Credentials{}); !errors.Is(err, ErrEmptyID) {
		t.Errorf("Fetch empty id: got %v, want ErrEmptyID", err)
	}
}
