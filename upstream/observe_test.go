package upstream

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// observation is one Options.Observe call.
type observation struct {
	status  int
	err     error
	elapsed time.Duration
}

func TestObserve(t *testing.T) {
	tests := []struct {
		name       string
		fault      upstreamtest.Fault
		wantStatus int
		wantErr    error         // nil: want a nil error
		timeout    time.Duration // Options.Timeout
	}{
		{"ok", upstreamtest.FaultNone, http.StatusOK, nil, 0},
		{"server error is an answer", upstreamtest.FaultUnavailable, http.StatusServiceUnavailable, nil, 0},
		{"too large has status and error", upstreamtest.FaultOversize, http.StatusOK, ErrBodyTooLarge, 0},
		{"timeout has no status", upstreamtest.FaultHang, 0, ErrTimeout, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			fake.SetFault(tt.fault)
			var (
				mu  sync.Mutex // protects obs
				obs []observation
			)
			c := newClient(t, Options{
				BaseURL: fake.URL,
				Timeout: tt.timeout,
				Breaker: BreakerOptions{ConsecutiveFailures: 1},
				Observe: func(status int, err error, elapsed time.Duration) {
					mu.Lock()
					defer mu.Unlock()
					obs = append(obs, observation{status, err, elapsed})
				},
			})

			_, fetchErr := c.Fetch(t.Context(), "1", demo(t))
			// A second call: rejected by the breaker when the first one
			// failed, and a rejection is not an attempted request.
			_, _ = c.Fetch(t.Context(), "1", demo(t))

			mu.Lock()
			defer mu.Unlock()
			wantCalls := 2
			if tt.wantStatus == 0 || tt.wantErr != nil || tt.wantStatus >= 500 {
				wantCalls = 1
			}
			if len(obs) != wantCalls {
				t.Fatalf("Observe calls: got %d %v, want %d", len(obs), obs, wantCalls)
			}
			o := obs[0]
			if o.status != tt.wantStatus {
				t.Errorf("status: got %d, want %d", o.status, tt.wantStatus)
			}
			if tt.wantErr == nil && o.err != nil || tt.wantErr != nil && !errors.Is(o.err, tt.wantErr) {
				t.Errorf("err: got %v, want %v", o.err, tt.wantErr)
			}
			if o.err != fetchErr && (o.err == nil || fetchErr == nil || o.err.Error() != fetchErr.Error()) {
				t.Errorf("err: got %v, want the error Fetch returned (%v)", o.err, fetchErr)
			}
			if o.elapsed <= 0 {
				t.Errorf("elapsed: got %v, want > 0", o.elapsed)
			}
		})
	}
}
