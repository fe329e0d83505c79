package upstream

import (
	"context"
	"net/http"
	"testing"
)

func TestFetchForwardsRequestHeaders(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name string
		in   *Forward // given to WithForward; nil: not called
		want map[string]string
	}{
		{"none", nil, map[string]string{"X-Request-Id": "", "Traceparent": "", "Tracestate": ""}},
		{
			"request id and trace context",
			&Forward{RequestID: "req-1", Traceparent: parent, Tracestate: "congo=t61rcWkgMzE"},
			map[string]string{"X-Request-Id": "req-1", "Traceparent": parent, "Tracestate": "congo=t61rcWkgMzE"},
		},
		{"request id only", &Forward{RequestID: "req-2"}, map[string]string{"X-Request-Id": "req-2", "Traceparent": ""}},
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
			ctx := WithForward(t.Context(), tt.in)
			if _, err := c.Fetch(ctx, "1", Credentials{Username: "u", Password: "p"}); err != nil {
				t.Fatalf("Fetch: got error %v, want nil", err)
			}
			for name, want := range tt.want {
				if v := got.Get(name); v != want {
					t.Errorf("upstream header %s: got %q, want %q", name, v, want)
				}
			}
			if got.Get("Authorization") == "" {
				t.Error("forwarding replaced the request's own headers")
			}
		})
	}
}

func TestForwardApplyAndContext(t *testing.T) {
	h := http.Header{"X-Request-Id": {"client's"}, "Traceparent": {"bogus"}, "Cookie": {"a=b"}}
	(&Forward{RequestID: "mine"}).Apply(h)
	if h.Get("X-Request-Id") != "mine" || h.Get("Traceparent") != "" || h.Get("Cookie") != "a=b" {
		t.Errorf("Apply: got %v, want X-Request-Id mine, no traceparent, other headers kept", h)
	}
	if got := ForwardFrom(context.Background()); got != nil {
		t.Errorf("ForwardFrom(empty context): got %v, want nil", got)
	}
	if ctx := context.Background(); WithForward(ctx, nil) != ctx {
		t.Error("WithForward(nil): got a new context, want ctx unchanged")
	}
}
