package upstream

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// BenchmarkFetch measures one cache-miss call against a local server
// answering a realistic user body, connection reuse included.
func BenchmarkFetch(b *testing.B) {
	body, ok := upstreamtest.NewHandler(upstreamtest.Options{}).User("acme", "1")
	if !ok {
		b.Fatal("fake has no user 1 in tenant acme")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL})
	if err != nil {
		b.Fatalf("New: got error %v, want nil", err)
	}
	b.Cleanup(c.CloseIdleConnections)
	cred := Credentials{Username: "demo", Password: "demo-password"}

	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		resp, err := c.Fetch(b.Context(), "1", cred)
		if err != nil || resp.Status != http.StatusOK {
			b.Fatalf("Fetch: got (%v, %v), want 200", resp, err)
		}
	}
}
