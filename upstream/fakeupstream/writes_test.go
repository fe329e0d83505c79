package fakeupstream

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/internal/testkit"
)

// firstUser decodes a one-element user array into its string fields.
func firstUser(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var arr []map[string]any
	if err := json.Unmarshal(body, &arr); err != nil || len(arr) != 1 {
		t.Fatalf("got body %q, want a one-element JSON array (err %v)", body, err)
	}
	return arr[0]
}

func TestUpdate(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		cred     *Credential
		body     string
		wantCode int
		want     map[string]string // fields expected afterwards (200 only)
	}{
		{name: "merges string fields", id: "3", cred: &demo, body: `{"first_name":"Zed","is_clockedin":"1"}`,
			wantCode: http.StatusOK, want: map[string]string{"first_name": "Zed", "is_clockedin": "1", "id": "3"}},
		{name: "soft delete", id: "4", cred: &demo, body: `{"is_deleted":"1"}`,
			wantCode: http.StatusOK, want: map[string]string{"is_deleted": "1"}},
		{name: "id and unknown fields ignored", id: "5", cred: &demo, body: `{"id":"99","nickname":"z","is_active":"0"}`,
			wantCode: http.StatusOK, want: map[string]string{"id": "5", "is_active": "0"}},
		{name: "empty body changes nothing", id: "6", cred: &demo, wantCode: http.StatusOK},
		{name: "unknown id", id: "999", cred: &demo, body: `{"first_name":"Zed"}`, wantCode: http.StatusNotFound},
		{name: "no credentials", id: "3", body: `{"first_name":"Zed"}`, wantCode: http.StatusUnauthorized},
		{name: "not JSON", id: "3", cred: &demo, body: `first_name=Zed`, wantCode: http.StatusBadRequest},
		{name: "JSON array", id: "3", cred: &demo, body: `[{"first_name":"Zed"}]`, wantCode: http.StatusBadRequest},
		{name: "JSON null", id: "3", cred: &demo, body: `null`, wantCode: http.StatusBadRequest},
		{name: "non-string seed field", id: "3", cred: &demo, body: `{"is_active":1}`, wantCode: http.StatusBadRequest},
		{name: "too large", id: "3", cred: &demo, body: `{"first_name":"` + strings.Repeat("z", maxWriteBody) + `"}`, wantCode: http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, Options{})
			c := testkit.HTTPClient(t)
			before, _ := s.User(demo.Tenant, tt.id)
			other, _ := s.User(demo2.Tenant, tt.id)
			resp, body := do(t, c, http.MethodPut, s.URL+"/api/users/"+tt.id, tt.cred, tt.body)
			wantStatus(t, resp, body, tt.wantCode)
			if got := s.Writes(); got != 1 {
				t.Errorf("got Writes %d, want 1", got)
			}
			if got := s.Requests(); got != 0 {
				t.Errorf("got Requests %d after a PUT, want 0", got)
			}
			after, _ := s.User(demo.Tenant, tt.id)
			if tt.wantCode != http.StatusOK {
				if !bytes.Equal(after, before) {
					t.Errorf("got user changed to %q by a failed PUT, want unchanged", after)
				}
				return
			}
			if !bytes.Equal(body, after) {
				t.Errorf("got PUT body %q, want the new stored body %q", body, after)
			}
			_, got := get(t, c, s, &demo, tt.id)
			if !bytes.Equal(got, after) {
				t.Errorf("got GET body %q, want %q", got, after)
			}
			fields := firstUser(t, got)
			for k, v := range tt.want {
				if fields[k] != v {
					t.Errorf("got %s %v, want %q", k, fields[k], v)
				}
			}
			if len(tt.want) == 0 && !bytes.Equal(after, before) {
				t.Errorf("got %q, want unchanged %q", after, before)
			}
			if now, _ := s.User(demo2.Tenant, tt.id); !bytes.Equal(now, other) {
				t.Error("got the other tenant's user changed, want tenants independent")
			}
		})
	}
}

func TestCreate(t *testing.T) {
	s := newServer(t, Options{Users: 10})
	c := testkit.HTTPClient(t)
	resp, body := do(t, c, http.MethodPost, s.URL+"/api/users", &demo, `{"first_name":"Nia","username":"nia"}`)
	wantStatus(t, resp, body, http.StatusCreated)
	if got, want := resp.Header.Get("Location"), "/api/users/11"; got != want {
		t.Errorf("got Location %q, want %q", got, want)
	}
	fields := firstUser(t, body)
	if fields["id"] != "11" || fields["first_name"] != "Nia" || fields["username"] != "nia" {
		t.Errorf("got id %v, first_name %v, username %v; want 11, Nia, nia", fields["id"], fields["first_name"], fields["username"])
	}
	resp, got := get(t, c, s, &demo, "11")
	wantStatus(t, resp, got, http.StatusOK)
	if !bytes.Equal(got, body) {
		t.Errorf("got GET body %q, want the created body %q", got, body)
	}
	resp, got = get(t, c, s, &demo2, "11")
	wantStatus(t, resp, got, http.StatusNotFound)

	resp, body = do(t, c, http.MethodPost, s.URL+"/api/users", &demo, "")
	wantStatus(t, resp, body, http.StatusCreated)
	if got := firstUser(t, body)["id"]; got != "12" {
		t.Errorf("got second created id %v, want 12", got)
	}
	resp, body = do(t, c, http.MethodPost, s.URL+"/api/users", nil, "")
	wantStatus(t, resp, body, http.StatusUnauthorized)
	resp, body = do(t, c, http.MethodPost, s.URL+"/api/users", &demo, `{"is_active":true}`)
	wantStatus(t, resp, body, http.StatusBadRequest)
	if _, ok := s.User(demo.Tenant, "13"); ok {
		t.Error("got user 13 created by a bad POST, want none")
	}
	if got := s.Writes(); got != 4 {
		t.Errorf("got Writes %d, want 4", got)
	}
}

// TestOtherWriteRoutes: the routes beside PUT /api/users/{id} that change
// users, each read back through GET: the API reads ids as numbers, DELETE
// soft-deletes, the webhook route updates, a role rename reaches every
// member.
func TestOtherWriteRoutes(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	get := func(id string) map[string]any {
		t.Helper()
		resp, body := do(t, c, http.MethodGet, s.URL+"/api/users/"+id, &demo, "")
		wantStatus(t, resp, body, http.StatusOK)
		return firstUser(t, body)
	}

	resp, body := do(t, c, http.MethodPut, s.URL+"/api/users/002", &demo, `{"first_name":"Leading"}`)
	wantStatus(t, resp, body, http.StatusOK)
	if got := get("2")["first_name"]; got != "Leading" {
		t.Errorf("PUT /api/users/002 then GET 2: first_name %v, want Leading", got)
	}

	resp, body = do(t, c, http.MethodDelete, s.URL+"/api/users/3", &demo, "")
	wantStatus(t, resp, body, http.StatusOK)
	if got := get("3")["is_deleted"]; got != "1" {
		t.Errorf("DELETE then GET: is_deleted %v, want 1", got)
	}

	resp, body = do(t, c, http.MethodPut, s.URL+"/api/modules/webhook/hook/users/4", &demo, `{"last_name":"Hooked"}`)
	wantStatus(t, resp, body, http.StatusOK)
	if got := get("4")["last_name"]; got != "Hooked" {
		t.Errorf("webhook PUT then GET: last_name %v, want Hooked", got)
	}

	roles := get("1")["roles"].(map[string]any)
	var roleID string
	for id := range roles {
		roleID = id
	}
	resp, body = do(t, c, http.MethodPut, s.URL+"/api/roles/"+roleID, &demo, `{"name":"Renamed"}`)
	wantStatus(t, resp, body, http.StatusOK)
	if got := get("1")["roles"].(map[string]any)[roleID]; got != "Renamed" {
		t.Errorf("role rename then GET: roles[%s] %v, want Renamed", roleID, got)
	}
	if other, _ := s.User(demo2.Tenant, "1"); bytes.Contains(other, []byte("Renamed")) {
		t.Error("a role rename in one tenant reached another")
	}
}
