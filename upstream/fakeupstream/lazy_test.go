package fakeupstream

import (
	"bytes"
	"net/http"
	"sync"
	"testing"

	"github.com/userproxy/userproxy/internal/testkit"
)

// TestLazyMatchesEager checks that Options.Lazy changes when users are
// built, not what a client sees: the same bodies for seeded ids, the same
// 404s for everything else.
func TestLazyMatchesEager(t *testing.T) {
	eager := newServer(t, Options{Users: 20})
	lazy := newServer(t, Options{Users: 20, Lazy: true})
	c := testkit.HTTPClient(t)
	tests := []struct {
		id   string
		want int
	}{
		{"1", http.StatusOK},
		{"7", http.StatusOK},
		{"20", http.StatusOK},
		{"0", http.StatusNotFound},
		{"21", http.StatusNotFound},
		{"07", http.StatusOK}, // ids are numbers: user 7
		{"+7", http.StatusNotFound},
		{"-1", http.StatusNotFound},
		{"abc", http.StatusNotFound},
	}
	for _, tt := range tests {
		for _, cred := range []*Credential{&demo, &demo2} {
			t.Run(cred.Tenant+"/"+tt.id, func(t *testing.T) {
				eResp, eBody := get(t, c, eager, cred, tt.id)
				wantStatus(t, eResp, eBody, tt.want)
				// Twice: the first GET builds the user, the second reads it.
				for range 2 {
					lResp, lBody := get(t, c, lazy, cred, tt.id)
					wantStatus(t, lResp, lBody, tt.want)
					if !bytes.Equal(lBody, eBody) {
						t.Fatalf("got lazy body %.120q, want the eager body %.120q", lBody, eBody)
					}
				}
				eUser, eOK := eager.User(cred.Tenant, tt.id)
				lUser, lOK := lazy.User(cred.Tenant, tt.id)
				if lOK != eOK || !bytes.Equal(lUser, eUser) {
					t.Errorf("got lazy User() (%.60q, %v), want eager (%.60q, %v)", lUser, lOK, eUser, eOK)
				}
			})
		}
	}
	if _, ok := lazy.User("no-such-tenant", "1"); ok {
		t.Error("got User of an unknown tenant found, want not found")
	}
}

// TestLazyWrites checks that a PUT reaches a seeded user that was never
// read, and that POST still creates the id after the seeded range.
func TestLazyWrites(t *testing.T) {
	s := newServer(t, Options{Users: 10, Lazy: true})
	c := testkit.HTTPClient(t)

	resp, body := do(t, c, http.MethodPut, s.URL+"/api/users/4", &demo, `{"first_name":"Zed"}`)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = get(t, c, s, &demo, "4")
	wantStatus(t, resp, body, http.StatusOK)
	if got := firstUser(t, body)["first_name"]; got != "Zed" {
		t.Errorf("got first_name %v after PUT, want Zed", got)
	}
	// The other tenant's user 4 is untouched.
	resp, body = get(t, c, s, &demo2, "4")
	wantStatus(t, resp, body, http.StatusOK)
	if got := firstUser(t, body)["first_name"]; got == "Zed" {
		t.Errorf("got first_name %v for the other tenant, want its seeded name", got)
	}

	resp, body = do(t, c, http.MethodPut, s.URL+"/api/users/11", &demo, `{"first_name":"Zed"}`)
	wantStatus(t, resp, body, http.StatusNotFound)

	resp, body = do(t, c, http.MethodPost, s.URL+"/api/users", &demo, `{"first_name":"New"}`)
	wantStatus(t, resp, body, http.StatusCreated)
	if got, want := resp.Header.Get("Location"), "/api/users/11"; got != want {
		t.Errorf("got Location %q, want %q", got, want)
	}
}

// TestLazyConcurrentFirstReads checks that concurrent first reads of one
// user all get the same body (run with -race).
func TestLazyConcurrentFirstReads(t *testing.T) {
	h := NewHandler(Options{Users: 5, Lazy: true})
	const readers = 16
	bodies := make([][]byte, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			b, _ := h.User(demo.Tenant, "3")
			bodies[i] = b
		})
	}
	wg.Wait()
	for i, b := range bodies {
		if len(b) == 0 || !bytes.Equal(b, bodies[0]) {
			t.Fatalf("got reader %d body %.60q, want %.60q (non-empty, same for all)", i, b, bodies[0])
		}
	}
}
