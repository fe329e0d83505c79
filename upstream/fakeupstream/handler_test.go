package fakeupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// seedFields are the 24 properties of the seed page's user object, copied
// from seed/get-user.md independently of the implementation's list.
var seedFields = []string{
	"id", "username", "email", "registration_password", "is_active", "is_clockedin",
	"sip_uri", "auto_dial", "is_deleted", "use_extended_ip_acl", "user_route_caller_id",
	"timezone_id", "use_webrtc", "first_name", "last_name", "virtual_extension",
	"default_language", "max_session_time", "max_concurrent_sessions", "twofa_type",
	"member_all_desks", "desks", "roles", "groups",
}

func TestGetUserHasAllSeedFields(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	for _, id := range []string{"1", "2", "17", "50"} {
		t.Run("id="+id, func(t *testing.T) {
			resp, body := get(t, c, s, &demo, id)
			wantStatus(t, resp, body, http.StatusOK)
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", got)
			}
			var arr []map[string]json.RawMessage
			if err := json.Unmarshal(body, &arr); err != nil {
				t.Fatalf("got body that is not a JSON array of objects: %v", err)
			}
			if len(arr) != 1 {
				t.Fatalf("got %d users, want 1", len(arr))
			}
			obj := arr[0]
			var keys []string
			for k := range obj {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := slices.Sorted(slices.Values(seedFields))
			if !slices.Equal(keys, want) {
				t.Fatalf("got fields %v, want %v", keys, want)
			}
			str := map[string]string{}
			for _, k := range seedFields[:21] {
				var v string
				if err := json.Unmarshal(obj[k], &v); err != nil {
					t.Errorf("field %s: got %s, want a JSON string", k, obj[k])
				}
				str[k] = v
			}
			var desks, groups []struct{ ID, Name string }
			var roles map[string]string
			for name, dst := range map[string]any{"desks": &desks, "groups": &groups, "roles": &roles} {
				if err := json.Unmarshal(obj[name], dst); err != nil {
					t.Errorf("field %s: got %s, which does not decode as documented: %v", name, obj[name], err)
				}
			}
			if len(desks) == 0 || len(roles) == 0 || groups == nil {
				t.Errorf("got desks %v, roles %v, groups %v; want non-empty desks and roles, non-null groups", desks, roles, groups)
			}
			checkRealistic(t, str, id, demo.Tenant)
		})
	}
}

// checkRealistic checks the values the spec pins down.
func checkRealistic(t *testing.T, f map[string]string, id, tenant string) {
	t.Helper()
	if f["id"] != id {
		t.Errorf("got id %q, want %q", f["id"], id)
	}
	wantEmail := strings.ToLower(f["first_name"]+"."+f["last_name"]) + "@" + tenant + ".example"
	if f["email"] != wantEmail {
		t.Errorf("got email %q, want %q", f["email"], wantEmail)
	}
	if want := "1000" + id; f["virtual_extension"] != want {
		t.Errorf("got virtual_extension %q, want %q", f["virtual_extension"], want)
	}
	if !strings.HasPrefix(f["sip_uri"], "sip:") {
		t.Errorf("got sip_uri %q, want a sip: URI", f["sip_uri"])
	}
	for _, k := range []string{"is_active", "is_clockedin", "auto_dial", "is_deleted", "use_extended_ip_acl", "use_webrtc", "member_all_desks"} {
		if f[k] != "0" && f[k] != "1" {
			t.Errorf("got %s %q, want \"0\" or \"1\"", k, f[k])
		}
	}
	for _, k := range []string{"timezone_id", "max_session_time", "max_concurrent_sessions"} {
		if _, err := strconv.Atoi(f[k]); err != nil {
			t.Errorf("got %s %q, want a number in a string", k, f[k])
		}
	}
}

func TestGetIsByteStableAndMatchesUser(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	want, ok := s.User(demo.Tenant, "7")
	if !ok {
		t.Fatal("got no user 7 for tenant acme, want one")
	}
	for i := range 3 {
		resp, body := get(t, c, s, &demo, "7")
		wantStatus(t, resp, body, http.StatusOK)
		if !bytes.Equal(body, want) {
			t.Fatalf("request %d: got body %q, want %q", i, body, want)
		}
		if resp.ContentLength != int64(len(want)) {
			t.Errorf("got Content-Length %d, want %d", resp.ContentLength, len(want))
		}
	}
	// Deterministic across handlers too: a restarted fake serves the same bytes.
	again, _ := NewHandler(Options{}).User(demo.Tenant, "7")
	if !bytes.Equal(again, want) {
		t.Errorf("got %q from a new handler, want %q", again, want)
	}
	// User returns a copy: scribbling on it must not change what is served.
	want[2] = 'X'
	if _, body := get(t, c, s, &demo, "7"); bytes.Equal(body, want) {
		t.Error("got the caller's modified bytes served, want User to return a copy")
	}
}

func TestTenantsSeeDifferentData(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	for _, id := range []string{"1", "2", "3", "50"} {
		_, a := get(t, c, s, &demo, id)
		_, b := get(t, c, s, &demo2, id)
		if bytes.Equal(a, b) {
			t.Errorf("id %s: got the same body for tenants acme and globex, want different", id)
		}
	}
	// Users are different too, not only the email domain.
	for i := 1; i <= 10; i++ {
		a, _ := s.User(demo.Tenant, strconv.Itoa(i))
		b, _ := s.User(demo.Tenant, strconv.Itoa(i+1))
		if bytes.Equal(a, b) {
			t.Errorf("got identical bodies for ids %d and %d, want different", i, i+1)
		}
	}
}

func TestAuth(t *testing.T) {
	s := newServer(t, Options{Credentials: []Credential{
		{Username: "alice", Password: "a-secret", Tenant: "acme"},
		{Username: "bob", Password: "b-secret", Tenant: "acme"},
		{Username: "carol", Password: "c-secret", Tenant: "globex"},
	}})
	c := testkit.HTTPClient(t)
	acme1, _ := s.User("acme", "1")
	globex1, _ := s.User("globex", "1")
	tests := []struct {
		name     string
		header   string // Authorization; "" sends none
		cred     *Credential
		wantCode int
		wantBody []byte
	}{
		{name: "no credentials", wantCode: http.StatusUnauthorized},
		{name: "wrong password", cred: &Credential{Username: "alice", Password: "b-secret"}, wantCode: http.StatusUnauthorized},
		{name: "unknown user", cred: &Credential{Username: "mallory", Password: "a-secret"}, wantCode: http.StatusUnauthorized},
		{name: "empty password", cred: &Credential{Username: "alice"}, wantCode: http.StatusUnauthorized},
		{name: "bearer token", header: "Bearer a-secret", wantCode: http.StatusUnauthorized},
		{name: "garbage basic", header: "Basic !!!", wantCode: http.StatusUnauthorized},
		{name: "demo creds not accepted when others configured", cred: &demo, wantCode: http.StatusUnauthorized},
		{name: "alice", cred: &Credential{Username: "alice", Password: "a-secret"}, wantCode: http.StatusOK, wantBody: acme1},
		{name: "bob shares acme", cred: &Credential{Username: "bob", Password: "b-secret"}, wantCode: http.StatusOK, wantBody: acme1},
		{name: "carol sees globex", cred: &Credential{Username: "carol", Password: "c-secret"}, wantCode: http.StatusOK, wantBody: globex1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, t.Context(), http.MethodGet, s.URL+"/api/users/1", tt.cred, "")
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			wantStatus(t, resp, body, tt.wantCode)
			if tt.wantCode == http.StatusUnauthorized {
				if got, want := resp.Header.Get("WWW-Authenticate"), `Basic realm="CommPeak API"`; got != want {
					t.Errorf("got WWW-Authenticate %q, want %q", got, want)
				}
				if got, want := string(body), `{"error":"unauthorized"}`; got != want {
					t.Errorf("got body %s, want %s", got, want)
				}
				return
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("got body %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	s := newServer(t, Options{Users: 3})
	c := testkit.HTTPClient(t)
	tests := []struct {
		name, method, path string
		wantCode           int
		wantBody           string
		wantAllow          string
	}{
		{"id past Users", http.MethodGet, "/api/users/4", http.StatusNotFound, `{"error":"user not found"}`, ""},
		{"id zero", http.MethodGet, "/api/users/0", http.StatusNotFound, `{"error":"user not found"}`, ""},
		{"non-numeric id", http.MethodGet, "/api/users/abc", http.StatusNotFound, `{"error":"user not found"}`, ""},
		{"sub path", http.MethodGet, "/api/users/1/extra", http.StatusNotFound, `{"error":"user not found"}`, ""},
		{"empty id", http.MethodGet, "/api/users/", http.StatusNotFound, `{"error":"user not found"}`, ""},
		{"other path", http.MethodGet, "/api/desks/1", http.StatusNotFound, `{"error":"not found"}`, ""},
		{"root", http.MethodGet, "/", http.StatusNotFound, `{"error":"not found"}`, ""},
		{"patch user", http.MethodPatch, "/api/users/1", http.StatusMethodNotAllowed, `{"error":"method not allowed"}`, "GET, HEAD, PUT, DELETE"},
		{"get role", http.MethodGet, "/api/roles/1", http.StatusMethodNotAllowed, `{"error":"method not allowed"}`, "PUT"},
		{"list users", http.MethodGet, "/api/users", http.StatusMethodNotAllowed, `{"error":"method not allowed"}`, "POST"},
		{"unknown control", http.MethodGet, "/_fake/nope", http.StatusNotFound, `{"error":"not found"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, c, tt.method, s.URL+tt.path, &demo, "")
			wantStatus(t, resp, body, tt.wantCode)
			if string(body) != tt.wantBody {
				t.Errorf("got body %s, want %s", body, tt.wantBody)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", got)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("got Allow %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestHead(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	want, _ := s.User(demo.Tenant, "1")
	resp, body := do(t, c, http.MethodHead, s.URL+"/api/users/1", &demo, "")
	wantStatus(t, resp, body, http.StatusOK)
	if len(body) != 0 || resp.ContentLength != int64(len(want)) {
		t.Errorf("got %d body bytes and Content-Length %d, want 0 and %d", len(body), resp.ContentLength, len(want))
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("got Requests %d after a HEAD, want 1", got)
	}
}

func TestCountsUnderConcurrency(t *testing.T) {
	s := newServer(t, Options{Users: 5})
	c := testkit.HTTPClient(t)
	const workers, perWorker = 8, 30
	bad := Credential{Username: "demo", Password: "nope"}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := strconv.Itoa(1 + (w+i)%6) // "6" does not exist: 404s count too
				cred := &demo
				if i%10 == 0 {
					cred = &bad // 401s count too
				}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/api/users/"+id, nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.SetBasicAuth(cred.Username, cred.Password)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err) // not Fatal: this is not the test goroutine
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := s.Requests(), int64(workers*perWorker); got != want {
		t.Errorf("got Requests %d, want %d", got, want)
	}
	var sum int64
	for id := 1; id <= 6; id++ {
		n := s.RequestsFor(strconv.Itoa(id))
		if want := int64(workers * perWorker / 6); n != want {
			t.Errorf("got RequestsFor(%d) %d, want %d", id, n, want)
		}
		sum += n
	}
	if sum != s.Requests() {
		t.Errorf("got per-id sum %d, want Requests %d", sum, s.Requests())
	}
	if got := s.Writes(); got != 0 {
		t.Errorf("got Writes %d after only GETs, want 0", got)
	}
	s.ResetCounts()
	if s.Requests() != 0 || s.RequestsFor("1") != 0 {
		t.Errorf("got Requests %d, RequestsFor(1) %d after ResetCounts, want 0, 0", s.Requests(), s.RequestsFor("1"))
	}
}

func TestLatency(t *testing.T) {
	const d = 40 * time.Millisecond
	s := newServer(t, Options{Latency: d})
	c := testkit.HTTPClient(t)
	start := time.Now()
	resp, body := get(t, c, s, &demo, "1")
	wantStatus(t, resp, body, http.StatusOK)
	if got := time.Since(start); got < d {
		t.Errorf("got answer after %v, want at least %v", got, d)
	}

	// A client giving up ends the wait (goleak in TestMain checks the handler returned).
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Do(newRequest(t, ctx, http.MethodGet, s.URL+"/api/users/1", &demo, "")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got error %v, want context.DeadlineExceeded", err)
	}
}
