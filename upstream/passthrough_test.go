package upstream

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTransportInjectsCredentials: in inject mode the pass-through transport
// replaces the caller's credentials with the configured ones and leaves the
// caller's request as it was; in passthrough mode it sends the caller's.
func TestTransportInjectsCredentials(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		got <- u + ":" + p
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		inject *Credentials
		want   string
	}{
		{"inject", &Credentials{Username: "api", Password: "s3cret"}, "api:s3cret"},
		{"passthrough", nil, "caller:pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, Options{BaseURL: srv.URL, Inject: tc.inject})
			req, _ := http.NewRequest(http.MethodPut, srv.URL+"/api/users/1", nil)
			req.SetBasicAuth("caller", "pw")
			resp, err := c.Transport().RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			resp.Body.Close()
			if g := <-got; g != tc.want {
				t.Errorf("upstream saw credentials %q, want %q", g, tc.want)
			}
			if u, _, _ := req.BasicAuth(); u != "caller" {
				t.Errorf("the caller's request was changed: user %q, want caller", u)
			}
		})
	}
}
