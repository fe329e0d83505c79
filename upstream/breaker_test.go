package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

func TestBreakerTripsOnServerErrorStormAndRecovers(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	const trip = 4
	c := newClient(t, Options{
		BaseURL: fake.URL,
		Breaker: BreakerOptions{ConsecutiveFailures: trip, OpenTimeout: 50 * time.Millisecond},
	})

	for i := range trip {
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		if err != nil {
			t.Fatalf("Fetch %d: got error %v, want the 500 as a Response", i, err)
		}
		if resp.Status != http.StatusInternalServerError {
			t.Fatalf("Fetch %d: got status %d, want 500", i, resp.Status)
		}
	}
	if got := c.State(); got != BreakerOpen {
		t.Fatalf("state after %d failures: got %s, want open", trip, got)
	}
	if got := c.RetryAfter(); got < time.Second {
		t.Errorf("RetryAfter while open: got %v, want >= 1s", got)
	}

	sent := fake.Requests()
	for i := range 10 {
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		if !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("Fetch %d while open: got (%v, %v), want ErrBreakerOpen wrapping gobreaker.ErrOpenState", i, resp, err)
		}
	}
	if got := fake.Requests(); got != sent {
		t.Errorf("upstream requests while open: got %d, want %d (none sent)", got, sent)
	}

	fake.SetFault(upstreamtest.FaultNone)
	// gobreaker reads the wall clock; the deterministic timing checks are
	// in TestBreakerLifecycle.
	testkit.Await(t, "breaker to go half-open", func() bool { return c.State() == BreakerHalfOpen })
	resp, err := c.Fetch(t.Context(), "1", demo(t))
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("probe: got (%v, %v), want 200", resp, err)
	}
	if got := c.State(); got != BreakerClosed {
		t.Errorf("state after a successful probe: got %s, want closed", got)
	}
	if got := c.RetryAfter(); got != 0 {
		t.Errorf("RetryAfter while closed: got %v, want 0", got)
	}
}

func TestBreakerCountsTooManyRequests(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultTooManyRequests)
	c := newClient(t, Options{BaseURL: fake.URL, Breaker: BreakerOptions{ConsecutiveFailures: 2}})

	for i := range 2 {
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		if err != nil {
			t.Fatalf("Fetch %d: got error %v, want the 429 as a Response", i, err)
		}
		if resp.Status != http.StatusTooManyRequests {
			t.Errorf("Fetch %d: got status %d, want 429", i, resp.Status)
		}
		if got := resp.Header.Get("Retry-After"); got != "3" {
			t.Errorf("Fetch %d: got Retry-After %q, want the upstream's %q", i, got, "3")
		}
	}
	if got := c.State(); got != BreakerOpen {
		t.Errorf("state after two 429s: got %s, want open", got)
	}
}

// TestBreakerInterval: failures further apart than Interval do not add up
// to a trip; with NoInterval they do, and the option survives the
// defaults (it once became DefaultInterval).
func TestBreakerInterval(t *testing.T) {
	for _, tt := range []struct {
		name     string
		interval time.Duration
		want     BreakerState
	}{
		{"short interval clears the count", 5 * time.Millisecond, BreakerClosed},
		{"no interval keeps it", NoInterval, BreakerOpen},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			fake.SetFault(upstreamtest.FaultServerError)
			opts := Options{BaseURL: fake.URL, Breaker: BreakerOptions{ConsecutiveFailures: 2, Interval: tt.interval}}
			if o, err := opts.withDefaults(); err != nil || o.Breaker.Interval != tt.interval {
				t.Fatalf("withDefaults: interval %v, %v; want %v kept", o.Breaker.Interval, err, tt.interval)
			}
			c := newClient(t, opts)
			c.Fetch(t.Context(), "1", demo(t))
			time.Sleep(20 * time.Millisecond) // past the short interval: failures further apart than it
			c.Fetch(t.Context(), "1", demo(t))
			if got := c.State(); got != tt.want {
				t.Errorf("state after two failures 20ms apart: %s, want %s", got, tt.want)
			}
		})
	}
	if got := fleetWindow(NoInterval); got != DefaultInterval {
		t.Errorf("fleet window without an interval: %v, want DefaultInterval", got)
	}
}

func TestBreakerCountsTimeout(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultHang)
	const timeout = 100 * time.Millisecond
	c := newClient(t, Options{BaseURL: fake.URL, Timeout: timeout, Breaker: BreakerOptions{ConsecutiveFailures: 2}})

	for i := range 2 {
		start := time.Now()
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		elapsed := time.Since(start)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Fetch %d: got (%v, %v), want ErrTimeout", i, resp, err)
		}
		if elapsed < timeout || elapsed > timeout+time.Second {
			t.Errorf("Fetch %d took %v, want about the %v timeout", i, elapsed, timeout)
		}
	}
	if got := c.State(); got != BreakerOpen {
		t.Errorf("state after two timeouts: got %s, want open", got)
	}
}

func TestBreakerIgnoresCallerCancellation(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultHang)
	// started receives each request as the client sends it, so the test can
	// cancel mid-flight without guessing a delay. Buffered so a request that
	// should not have been sent is counted instead of blocking.
	started := make(chan struct{}, 1)
	var sent atomic.Int64
	base := newTransport(time.Minute)
	t.Cleanup(base.CloseIdleConnections)
	rt := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		started <- struct{}{}
		return base.RoundTrip(r)
	})
	c := newClient(t, Options{BaseURL: fake.URL, Transport: rt, Breaker: BreakerOptions{ConsecutiveFailures: 1}})
	cred := demo(t)

	for i := range 10 {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := c.Fetch(ctx, "1", cred)
			done <- err
		}()
		select {
		case <-started:
		case err := <-done:
			cancel()
			t.Fatalf("Fetch %d: got %v before reaching the upstream, want it in flight", i, err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Fatalf("Fetch %d: got %v, want context.Canceled and no ErrTimeout", i, err)
		}
	}
	// Already canceled before the call: nothing is sent.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Fetch(ctx, "1", cred); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with canceled ctx: got %v, want context.Canceled", err)
	}
	if got := sent.Load(); got != 10 {
		t.Errorf("requests sent: got %d, want 10 (none for the pre-canceled call)", got)
	}
	if got := c.State(); got != BreakerClosed {
		t.Errorf("state after 11 cancellations with ConsecutiveFailures 1: got %s, want closed", got)
	}
}

// scripted is a RoundTripper for synctest bubbles (no sockets): it answers
// with the current status, or an error, or blocks until released or the
// request's context is done.
type scripted struct {
	sent    atomic.Int64
	status  atomic.Int64 // HTTP status to answer; 0 = transport error
	block   atomic.Bool  // wait for release or ctx
	release chan struct{}
}

func newScripted(status int) *scripted {
	s := &scripted{release: make(chan struct{})}
	s.status.Store(int64(status))
	return s
}

func (s *scripted) RoundTrip(r *http.Request) (*http.Response, error) {
	s.sent.Add(1)
	if s.block.Load() {
		select {
		case <-s.release:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	st := int(s.status.Load())
	if st == 0 {
		return nil, errors.New("connection refused")
	}
	return cannedResponse(st, `[{"id":"1"}]`), nil
}

// fetchAsync starts c.Fetch in a goroutine and returns its result channel.
func fetchAsync(ctx context.Context, c *Client) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, "1", Credentials{Username: "u", Password: "p"})
		done <- err
	}()
	return done
}

func TestBreakerLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newScripted(http.StatusServiceUnavailable)
		var transitions []string // OnStateChange runs on the caller's goroutine
		c := newClient(t, Options{
			BaseURL:   "http://upstream.invalid",
			Transport: up,
			Breaker:   BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: 10 * time.Second, HalfOpenRequests: 1},
			OnStateChange: func(from, to BreakerState) {
				transitions = append(transitions, fmt.Sprintf("%s->%s", from, to))
			},
		})
		cred := Credentials{Username: "u", Password: "p"}

		for range 3 {
			if resp, err := c.Fetch(t.Context(), "1", cred); err != nil || resp.Status != 503 {
				t.Fatalf("Fetch: got (%v, %v), want a 503 Response", resp, err)
			}
		}
		if got, want := c.RetryAfter(), 10*time.Second; got != want {
			t.Errorf("RetryAfter just opened: got %v, want %v", got, want)
		}
		time.Sleep(2500 * time.Millisecond)
		if got, want := c.RetryAfter(), 8*time.Second; got != want {
			t.Errorf("RetryAfter 2.5s later: got %v, want %v (7.5s rounded up)", got, want)
		}
		time.Sleep(7*time.Second + 400*time.Millisecond)
		if got, want := c.RetryAfter(), time.Second; got != want {
			t.Errorf("RetryAfter 0.1s before half-open: got %v, want %v (floor)", got, want)
		}
		if _, err := c.Fetch(t.Context(), "1", cred); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("Fetch while open: got %v, want ErrBreakerOpen", err)
		}
		if got := up.sent.Load(); got != 3 {
			t.Errorf("requests sent: got %d, want 3", got)
		}

		time.Sleep(200 * time.Millisecond)
		if got := c.State(); got != BreakerHalfOpen {
			t.Fatalf("state after OpenTimeout: got %s, want half-open", got)
		}
		if got := c.RetryAfter(); got != time.Second {
			t.Errorf("RetryAfter half-open: got %v, want 1s", got)
		}

		// The probe hangs; a second caller is turned away, not queued.
		up.status.Store(http.StatusOK)
		up.block.Store(true)
		ctx, cancel := context.WithCancel(t.Context())
		probe := fetchAsync(ctx, c)
		synctest.Wait()
		_, err := c.Fetch(t.Context(), "1", cred)
		if !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Errorf("Fetch during probe: got %v, want ErrBreakerOpen wrapping gobreaker.ErrTooManyRequests", err)
		}
		// The prober gives up: that neither closes nor reopens the breaker,
		// and frees the probe slot.
		cancel()
		if err := <-probe; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled probe: got %v, want context.Canceled", err)
		}
		if got := c.State(); got != BreakerHalfOpen {
			t.Fatalf("state after canceled probe: got %s, want half-open", got)
		}

		up.block.Store(false)
		if resp, err := c.Fetch(t.Context(), "1", cred); err != nil || resp.Status != http.StatusOK {
			t.Fatalf("second probe: got (%v, %v), want 200", resp, err)
		}
		if got := c.State(); got != BreakerClosed {
			t.Errorf("state after successful probe: got %s, want closed", got)
		}
		if got := c.RetryAfter(); got != 0 {
			t.Errorf("RetryAfter closed: got %v, want 0", got)
		}
		want := []string{"closed->open", "open->half-open", "half-open->closed"}
		if fmt.Sprint(transitions) != fmt.Sprint(want) {
			t.Errorf("transitions: got %v, want %v", transitions, want)
		}
	})
}

func TestBreakerFailedProbeReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newScripted(0) // transport errors
		c := newClient(t, Options{
			BaseURL:   "http://upstream.invalid",
			Transport: up,
			Breaker:   BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: 5 * time.Second},
		})
		if _, err := c.Fetch(t.Context(), "1", Credentials{}); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("first Fetch: got %v, want a transport error", err)
		}
		time.Sleep(5*time.Second + time.Millisecond)
		if _, err := c.Fetch(t.Context(), "1", Credentials{}); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("probe: got %v, want a transport error", err)
		}
		if got := c.State(); got != BreakerOpen {
			t.Errorf("state after failed probe: got %s, want open", got)
		}
		if got, want := c.RetryAfter(), 5*time.Second; got != want {
			t.Errorf("RetryAfter after reopening: got %v, want %v", got, want)
		}
	})
}

// TestBreakerFailureAccounting checks which outcomes count: with
// ConsecutiveFailures 1, a failure opens the breaker at once.
func TestBreakerFailureAccounting(t *testing.T) {
	tests := []struct {
		name     string
		status   int  // 0: transport error
		hang     bool // block until the call's own Timeout
		cancel   bool // caller cancels mid-call
		body     int  // body size limit; 0 = default
		wantOpen bool
	}{
		{name: "200", status: 200},
		{name: "301", status: 301},
		{name: "400", status: 400},
		{name: "401", status: 401},
		{name: "403", status: 403},
		{name: "404", status: 404},
		{name: "429", status: 429, wantOpen: true},
		{name: "500", status: 500, wantOpen: true},
		{name: "502", status: 502, wantOpen: true},
		{name: "503", status: 503, wantOpen: true},
		{name: "504", status: 504, wantOpen: true},
		{name: "transport error", status: 0, wantOpen: true},
		{name: "own timeout", status: 200, hang: true, wantOpen: true},
		{name: "caller cancel", status: 200, hang: true, cancel: true},
		{name: "body too large", status: 200, body: 4, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newScripted(tt.status)
				up.block.Store(tt.hang)
				c := newClient(t, Options{
					BaseURL:      "http://upstream.invalid",
					Transport:    up,
					MaxBodyBytes: int64(tt.body),
					Breaker:      BreakerOptions{ConsecutiveFailures: 1},
				})
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := fetchAsync(ctx, c)
				if tt.cancel {
					synctest.Wait()
					cancel()
				}
				<-done
				want := BreakerClosed
				if tt.wantOpen {
					want = BreakerOpen
				}
				if got := c.State(); got != want {
					t.Errorf("state: got %s, want %s", got, want)
				}
			})
		})
	}
}

func TestOnStateChangeMayBeConcurrent(t *testing.T) {
	// Many goroutines failing at once: every transition is reported exactly
	// once, and the race detector sees the callback and Fetch together.
	synctest.Test(t, func(t *testing.T) {
		var (
			mu    sync.Mutex // protects opens
			opens int
		)
		c := newClient(t, Options{
			BaseURL:   "http://upstream.invalid",
			Transport: newScripted(500),
			Breaker:   BreakerOptions{ConsecutiveFailures: 3},
			OnStateChange: func(_, to BreakerState) {
				if to == BreakerOpen {
					mu.Lock()
					opens++
					mu.Unlock()
				}
			},
		})
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() { _, _ = c.Fetch(t.Context(), "1", Credentials{}) })
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if opens != 1 {
			t.Errorf("open transitions: got %d, want 1", opens)
		}
	})
}
