package testkit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHTTPClientOwnsItsConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	a, b := HTTPClient(t), HTTPClient(t)
	if a.Transport == b.Transport || a.Transport == http.DefaultTransport {
		t.Error("got a shared transport, want each client its own")
	}
	if a.Timeout <= 0 {
		t.Errorf("got Timeout %v, want a bound", a.Timeout)
	}
	resp, err := a.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "ok" {
		t.Errorf("got body %q, %v; want ok", body, err)
	}
}
