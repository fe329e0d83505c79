package upstream

import (
	"context"
	"net/http"
	"testing"
)

func TestFetchForwardsRequestHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header // given to WithForwardHeaders; nil: not called
		want map[string]string
	}{
		{"none", nil, map[string]string{"X-Request-Id": "", "Traceparent": "", "Tracestate": ""}},
		{
			"request id and trace context",
			http.Header{
				"X-Request-Id": {"req-1"},
				"Traceparent":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
				"Tracestate":   {"congo=t61rcWkgMzE"},
			},
			map[string]string{
				"X-Request-Id": "req-1",
				"Traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"Tracestate":   "congo=t61rcWkgMzE",
			},
		},
		{
			"only the allowed headers travel",
			http.Header{"X-Request-Id": {"req-2"}, "Authorization": {"Basic c2VjcmV0"}, "Cookie": {"a=b"}},
			map[string]string{"X-Request-Id": "req-2", "Authorization": "", "Cookie": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got http.Header
			c := newClient(t, Options{
				BaseURL: "http://upstream.invalid",
				Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					got = r.Header.Clone()
					return cannedResponse(http.StatusOK, `[{"id":"1"}]`), nil
				}),
			})
			ctx := t.Context()
			if tt.in != nil {
				ctx = WithForwardHeaders(ctx, tt.in)
			}
			if _, err := c.Fetch(ctx, "1", Credentials{}); err != nil {
				t.Fatalf("Fetch: got error %v, want nil", err)
			}
			for name, want := range tt.want {
				if v := got.Get(name); v != want {
					t.Errorf("upstream header %s: got %q, want %q", name, v, want)
				}
			}
		})
	}
}

func TestWithForwardHeadersCopies(t *testing.T) {
	h := http.Header{"X-Request-Id": {"before"}}
	ctx := WithForwardHeaders(context.Background(), h)
	h.Set("X-Request-Id", "after")
	if got := ForwardHeadersFrom(ctx).Get("X-Request-Id"); got != "before" {
		t.Errorf("stored request id after the caller changed its header: got %q, want %q", got, "before")
	}
	if got := WithForwardHeaders(ctx, http.Header{"Cookie": {"a=b"}}); got != ctx {
		t.Error("WithForwardHeaders without forwardable headers: got a new context, want ctx unchanged")
	}
	if got := ForwardHeadersFrom(context.Background()); got != nil {
		t.Errorf("ForwardHeadersFrom(empty context): got %v, want nil", got)
	}
}
