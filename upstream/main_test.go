package upstream

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// TestMain fails the package if a test leaves goroutines behind. No ignores:
// every test closes its client's idle connections and its servers in
// t.Cleanup, and goleak retries long enough for their goroutines to exit.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// demo is the fake upstream's first demo credential (tenant acme).
func demo(t *testing.T) Credentials {
	t.Helper()
	c := upstreamtest.DemoCredentials()[0]
	return Credentials{Username: c.Username, Password: c.Password}
}

// newFake starts a fake upstream for t.
func newFake(t *testing.T) *upstreamtest.Server {
	t.Helper()
	return upstreamtest.NewServer(t, upstreamtest.Options{})
}

// newClient returns New(opts) and closes its idle connections when t ends
// (registered after any server, so it runs first).
func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: got error %v, want nil", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// roundTripperFunc adapts a function to http.RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cannedResponse returns a response with status and a JSON body, with its
// Content-Length set as a server would.
func cannedResponse(status int, body string) *http.Response {
	return &http.Response{
		StatusCode:    status,
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}
