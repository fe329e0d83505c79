package upstreamtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
)

// newUserRequest is a GET of user id with the first demo credential.
func newUserRequest(t *testing.T, s *Server, id string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+"/api/users/"+id, nil)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	demo := DemoCredentials()[0]
	req.SetBasicAuth(demo.Username, demo.Password)
	return req
}

// TestNewServerServesTheFake checks that NewServer listens on 127.0.0.1
// and serves fakeupstream's handler with the demo credentials.
func TestNewServerServesTheFake(t *testing.T) {
	s := NewServer(t, Options{})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || strings.HasSuffix(s.URL, "/") {
		t.Errorf("got URL %q, want http://127.0.0.1:PORT", s.URL)
	}
	resp, err := testkit.HTTPClient(t).Do(newUserRequest(t, s, "1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	want, _ := s.User(DemoCredentials()[0].Tenant, "1")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("got %d %.80q, want 200 and user 1's body %.80q", resp.StatusCode, body, want)
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("got Requests %d, want 1", got)
	}
}

func TestServerCloseDoesNotWaitOnHang(t *testing.T) {
	s := NewServer(t, Options{})
	s.SetFault(FaultHang)
	c := testkit.HTTPClient(t)
	errc := make(chan error, 1)
	req := newUserRequest(t, s, "1")
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "the request to hang", func() bool { return s.Stats().Hanging == 1 })
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	testkit.Receive(t, 10*time.Second, "Server.Close", closed)
	if err := testkit.Receive(t, 10*time.Second, "the client to return", errc); err == nil {
		t.Error("got a response from a closed server, want an error")
	}
	if _, err := c.Get(s.URL + "/api/users/1"); err == nil {
		t.Error("got a connection to a closed server, want an error")
	}
}
