package fakeupstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/userproxy/userproxy/internal/testkit"
)

// TestMain fails the run if any test leaves a goroutine behind: a hung or
// dribbling handler that outlives its client or server would show up here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	demo  = DemoCredentials()[0] // tenant acme
	demo2 = DemoCredentials()[1] // tenant globex
)

// testServer is a Handler on an httptest server, as upstreamtest.Server
// is; these tests cannot use upstreamtest, which imports this package.
type testServer struct {
	*Handler
	URL string // the base URL, with no trailing slash
}

// newServer serves NewHandler(opts) until t ends.
func newServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	return startServer(t, NewHandler(opts))
}

// startServer serves h until t ends. Tests set h's test hooks before
// calling it, so that no request goroutine reads them unsynchronised.
func startServer(t *testing.T, h *Handler) *testServer {
	t.Helper()
	srv := httptest.NewServer(h) // on a loopback address: the control endpoints answer
	t.Cleanup(func() {
		h.Close() // release hung requests, so that srv.Close does not wait on them
		srv.CloseClientConnections()
		srv.Close()
	})
	return &testServer{Handler: h, URL: srv.URL}
}

// do sends method url with cred's Basic auth (none if cred is nil) and body
// (none if empty), and returns the response with its body read.
func do(t *testing.T, c *http.Client, method, url string, cred *Credential, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(newRequest(t, context.Background(), method, url, cred, body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, readAll(t, resp)
}

// readAll reads and closes resp's body.
func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return data
}

func newRequest(t *testing.T, ctx context.Context, method, url string, cred *Credential, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if cred != nil {
		req.SetBasicAuth(cred.Username, cred.Password)
	}
	return req
}

// get is do for a GET of user id with cred.
func get(t *testing.T, c *http.Client, s *testServer, cred *Credential, id string) (*http.Response, []byte) {
	t.Helper()
	return do(t, c, http.MethodGet, s.URL+"/api/users/"+id, cred, "")
}

// wantStatus fails t unless resp has status want.
func wantStatus(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("got status %d (body %.200q), want %d", resp.StatusCode, body, want)
	}
}

// receive waits for ch, failing t after a generous deadline so a broken
// release shows as a failure rather than a stuck test binary.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	return testkit.Receive(t, 10*time.Second, what, ch)
}
