package readthrough

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/userproxy/userproxy/upstream"
)

// TestClassify pins the one place where a fill error becomes a status.
func TestClassify(t *testing.T) {
	h := &Engine{}
	headerTimeout := errors.New("net/http: timeout awaiting response headers") // a net.Error, no context deadline
	for _, tc := range []struct {
		name   string
		err    error
		status int
		detail string
	}{
		{"transport header timeout", fmt.Errorf("fetching user 1: %w: %w", upstream.ErrTimeout, headerTimeout), http.StatusGatewayTimeout, "timeout"},
		{"call deadline", fmt.Errorf("fetching user 1: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, "timeout"},
		{"5xx", &upstreamStatusError{status: 500}, http.StatusBadGateway, ""},
		{"429", &upstreamStatusError{status: 429, retryAfter: "3"}, http.StatusTooManyRequests, ""},
		{"too large", fmt.Errorf("x: %w", upstream.ErrBodyTooLarge), http.StatusBadGateway, "body-too-large"},
		{"not JSON", errInvalidJSON, http.StatusBadGateway, "invalid-json"},
		{"refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), http.StatusServiceUnavailable, "connection-error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := h.classify(tc.err)
			if f.status != tc.status || f.detail != tc.detail {
				t.Errorf("classify: got %d %q, want %d %q", f.status, f.detail, tc.status, tc.detail)
			}
		})
	}
}
