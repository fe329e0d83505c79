package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// fakeFleet is an in-memory fleet record shared by the Clients of one test,
// each through a member with its own replica id.
type fakeFleet struct {
	mu         sync.Mutex           // protects the fields below
	reports    map[string]time.Time // replica id → report expiry
	prober     string               // probe lease holder; "" when free
	probeUntil time.Time
	failures   map[string]int // replica id → failed calls since the last success
	err        error          // returned by every call while non-nil
	calls      map[string]int // method → calls
}

func newFakeFleet() *fakeFleet {
	return &fakeFleet{reports: map[string]time.Time{}, failures: map[string]int{}, calls: map[string]int{}}
}

// fail counts n failures of id, as another replica would.
func (f *fakeFleet) fail(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[id] += n
}

// failuresNow returns the fleet's failure count.
func (f *fakeFleet) failuresNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.failures {
		n += c
	}
	return n
}

// member is replica id's handle on the record.
func (f *fakeFleet) member(id string) FleetBreaker { return fleetMember{f, id} }

// report records a live report of id for ttl, as another replica would.
func (f *fakeFleet) report(id string, ttl time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[id] = time.Now().Add(ttl)
}

// holdProbe gives the probe lease to id for d.
func (f *fakeFleet) holdProbe(id string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prober, f.probeUntil = id, time.Now().Add(d)
}

func (f *fakeFleet) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// live returns the ids with a live report.
func (f *fakeFleet) live() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, until := range f.reports {
		if until.After(time.Now()) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (f *fakeFleet) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

type fleetMember struct {
	f  *fakeFleet
	id string
}

func (m fleetMember) enter(method string) (func(), error) {
	m.f.mu.Lock()
	m.f.calls[method]++
	if m.f.err != nil {
		err := m.f.err
		m.f.mu.Unlock()
		return nil, err
	}
	return m.f.mu.Unlock, nil
}

func (m fleetMember) Report(_ context.Context, ttl time.Duration) error {
	unlock, err := m.enter("Report")
	if err != nil {
		return err
	}
	defer unlock()
	m.f.reports[m.id] = time.Now().Add(ttl)
	return nil
}

func (m fleetMember) View(context.Context) (FleetView, error) {
	unlock, err := m.enter("View")
	if err != nil {
		return FleetView{}, err
	}
	defer unlock()
	return m.viewLocked(), nil
}

func (m fleetMember) Fail(_ context.Context, window time.Duration) (FleetView, error) {
	unlock, err := m.enter("Fail")
	if err != nil {
		return FleetView{}, err
	}
	defer unlock()
	m.f.failures[m.id]++
	return m.viewLocked(), nil
}

func (m fleetMember) viewLocked() FleetView {
	now := time.Now()
	var v FleetView
	for id, until := range m.f.reports {
		if until.After(now) {
			v.Reports++
			v.Own = v.Own || id == m.id
		}
	}
	v.ProbeIn = max(m.f.probeUntil.Sub(now), 0)
	for _, n := range m.f.failures {
		v.Failures += n
		v.Failing++
	}
	return v
}

func (m fleetMember) Reset(context.Context) error {
	unlock, err := m.enter("Reset")
	if err != nil {
		return err
	}
	defer unlock()
	clear(m.f.failures)
	return nil
}

func (m fleetMember) TryProbe(_ context.Context, lease time.Duration) (bool, error) {
	unlock, err := m.enter("TryProbe")
	if err != nil {
		return false, err
	}
	defer unlock()
	now := time.Now()
	if m.f.probeUntil.After(now) {
		return false, nil
	}
	m.f.prober, m.f.probeUntil = m.id, now.Add(lease)
	return true, nil
}

func (m fleetMember) Clear(context.Context) error {
	unlock, err := m.enter("Clear")
	if err != nil {
		return err
	}
	defer unlock()
	clear(m.f.reports)
	clear(m.f.failures)
	m.f.prober, m.f.probeUntil = "", time.Time{}
	return nil
}

// fleetClient is a Client on fake's upstream and fleet, as replica id,
// with a view of the record already read.
func fleetClient(t *testing.T, fake *upstreamtest.Server, fleet *fakeFleet, id string, b BreakerOptions) *Client {
	t.Helper()
	c := newClient(t, Options{BaseURL: fake.URL, Breaker: b, Fleet: fleet.member(id), FleetQuorum: 2})
	c.fleet.refresh(t.Context())
	return c
}

func TestFleetQuorumFailsFast(t *testing.T) {
	fake := newFake(t)
	fleet := newFakeFleet()
	fleet.report("a", time.Minute)
	fleet.report("b", time.Minute)
	fleet.holdProbe("a", time.Minute)
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{OpenTimeout: time.Minute})

	resp, err := c.Fetch(t.Context(), "1", demo(t))
	if !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, ErrFleetOpen) {
		t.Fatalf("Fetch with 2 reports of 2 needed and the probe held elsewhere: got (%v, %v), want ErrBreakerOpen and ErrFleetOpen", resp, err)
	}
	if got := fake.Requests(); got != 0 {
		t.Errorf("upstream requests: got %d, want 0", got)
	}
	if got := c.State(); got != BreakerClosed {
		t.Errorf("own breaker: got %s, want closed (the hint is not its state)", got)
	}
	if got := c.FleetState(); got != BreakerOpen {
		t.Errorf("FleetState: got %s, want open", got)
	}
	if got := c.RetryAfter(); got < 59*time.Second {
		t.Errorf("RetryAfter under the hint: got %v, want the probe lease's minute (at least 59s)", got)
	}
	if got := fleet.count("TryProbe"); got != 0 {
		t.Errorf("TryProbe calls: got %d, want 0 (the view shows the lease held)", got)
	}
}

func TestFleetLoneReportDoesNotStopTheReplica(t *testing.T) {
	fake := newFake(t)
	fleet := newFakeFleet()
	fleet.report("a", time.Minute) // a replica with a broken network
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{})

	for i := range 3 {
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("Fetch %d with 1 report of 2 needed: got (%v, %v), want 200", i, resp, err)
		}
	}
	if got := c.FleetState(); got != BreakerClosed {
		t.Errorf("FleetState: got %s, want closed", got)
	}
	if got := c.RetryAfter(); got != 0 {
		t.Errorf("RetryAfter: got %v, want 0", got)
	}
}

// TestFleetFailuresTripEarly: once the fleet has seen -breaker-failures
// failures in a row from Quorum replicas, a replica's first failure trips
// its breaker, which reports.
func TestFleetFailuresTripEarly(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	fleet := newFakeFleet()
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 5, OpenTimeout: time.Minute})
	// Counted after the last poll: the failure reads the count as it is.
	fleet.fail("a", 4)

	resp, err := c.Fetch(t.Context(), "1", demo(t))
	if err != nil || resp.Status != http.StatusInternalServerError {
		t.Fatalf("Fetch: got (%v, %v), want the 500", resp, err)
	}
	if got := c.State(); got != BreakerOpen {
		t.Fatalf("own breaker after 1 failure of 5, the fleet's fifth, from 2 replicas: got %s, want open", got)
	}
	if got := fleet.live(); len(got) != 1 || got[0] != "me" {
		t.Errorf("live reports: got %q, want [me]", got)
	}
	if _, err := c.Fetch(t.Context(), "1", demo(t)); !errors.Is(err, ErrBreakerOpen) {
		t.Errorf("Fetch after: got %v, want ErrBreakerOpen", err)
	}
	if got := fake.Requests(); got != 1 {
		t.Errorf("upstream requests: got %d, want 1", got)
	}
}

// TestFleetSuccessResetsFailures: one replica failing alone (a broken
// network path) cannot lower the others' threshold: their successes reset
// the fleet's count, and their own failures then count as usual.
func TestFleetSuccessResetsFailures(t *testing.T) {
	fake := newFake(t)
	fleet := newFakeFleet()
	fleet.fail("a", 50)
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: time.Minute})

	if resp, err := c.Fetch(t.Context(), "1", demo(t)); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("Fetch: got (%v, %v), want 200", resp, err)
	}
	if got := fleet.failuresNow(); got != 0 {
		t.Fatalf("fleet failures after a success: got %d, want 0", got)
	}
	if resp, err := c.Fetch(t.Context(), "1", demo(t)); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("Fetch: got (%v, %v), want 200", resp, err)
	}
	if got := fleet.count("Reset"); got != 1 {
		t.Errorf("Reset calls: got %d, want 1 (none while the count is zero)", got)
	}
	fleet.fail("a", 1)
	fake.SetFault(upstreamtest.FaultServerError)
	c.Fetch(t.Context(), "1", demo(t))
	if got := c.State(); got != BreakerClosed {
		t.Errorf("own breaker after 1 failure of 3 (the fleet's second): got %s, want closed", got)
	}
}

func TestFleetWithoutReportsNeedsEveryFailure(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	fleet := newFakeFleet()
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: time.Minute})
	for i := range 3 {
		if got := c.State(); got != BreakerClosed {
			t.Fatalf("own breaker after %d failures of 3: got %s, want closed", i, got)
		}
		c.Fetch(t.Context(), "1", demo(t))
	}
	if got := c.State(); got != BreakerOpen {
		t.Fatalf("own breaker after 3 failures: got %s, want open", got)
	}
	if got := fleet.live(); len(got) != 1 || got[0] != "me" {
		t.Errorf("live reports: got %q, want [me]", got)
	}
	if got := fleet.failuresNow(); got != 3 {
		t.Errorf("fleet failures: got %d, want 3", got)
	}
}

// TestFleetProbeLeaseOnlyWinnerCalls: with the hint in force, of three
// replicas whose own breakers are closed, only the one that takes the probe
// lease calls the upstream; its success clears the record, and then every
// replica calls again.
func TestFleetProbeLeaseOnlyWinnerCalls(t *testing.T) {
	fake := newFake(t)
	fleet := newFakeFleet()
	fleet.report("a", time.Minute)
	fleet.report("b", time.Minute)
	// The probe is held at the upstream until the others are refused:
	// once it succeeds the hint is cleared, and a replica that had not yet
	// asked would rightly call too.
	gate := make(chan struct{})
	target, _ := url.Parse(fake.URL)
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(held.Close)
	var clients []*Client
	for _, id := range []string{"r1", "r2", "r3"} {
		c := newClient(t, Options{BaseURL: held.URL, Breaker: BreakerOptions{OpenTimeout: time.Minute}, Fleet: fleet.member(id), FleetQuorum: 2})
		c.fleet.refresh(t.Context())
		clients = append(clients, c)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		refused int
	)
	go func() { // not the test's goroutine: it may not fail the test; the counts below do
		defer close(gate)
		for deadline := time.Now().Add(testkit.DefaultWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			n := refused
			mu.Unlock()
			if n == 2 {
				return
			}
		}
	}()
	for _, c := range clients {
		wg.Go(func() {
			resp, err := c.Fetch(t.Context(), "1", demo(t))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && resp.Status == http.StatusOK:
				ok++
			case errors.Is(err, ErrFleetOpen):
				refused++
			default:
				t.Errorf("Fetch: got (%v, %v), want 200 or ErrFleetOpen", resp, err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || refused != 2 {
		t.Errorf("got %d answered and %d refused, want 1 and 2", ok, refused)
	}
	if got := fake.Requests(); got != 1 {
		t.Errorf("upstream requests: got %d, want 1 (the probe)", got)
	}
	if got := fleet.live(); len(got) != 0 {
		t.Errorf("live reports after a successful probe: got %q, want none", got)
	}
	for i, c := range clients {
		c.fleet.refresh(t.Context())
		if resp, err := c.Fetch(t.Context(), "1", demo(t)); err != nil || resp.Status != http.StatusOK {
			t.Errorf("replica %d after the probe: got (%v, %v), want 200", i+1, resp, err)
		}
	}
}

// TestFleetFailedProbeReports: the probe of a replica whose own breaker was
// closed fails, trips its breaker at once and reports; the lease stays
// held, so nobody probes again within the open period.
func TestFleetFailedProbeReports(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	fleet := newFakeFleet()
	fleet.report("a", time.Minute)
	fleet.report("b", time.Minute)
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 5, OpenTimeout: time.Minute})
	other := fleetClient(t, fake, fleet, "other", BreakerOptions{ConsecutiveFailures: 5, OpenTimeout: time.Minute})

	if resp, err := c.Fetch(t.Context(), "1", demo(t)); err != nil || resp.Status != http.StatusInternalServerError {
		t.Fatalf("probe: got (%v, %v), want the 500", resp, err)
	}
	if got := c.State(); got != BreakerOpen {
		t.Errorf("prober's breaker after a failed probe: got %s, want open", got)
	}
	if got := len(fleet.live()); got != 3 {
		t.Errorf("live reports: got %d, want 3 (a, b and the prober)", got)
	}
	if _, err := other.Fetch(t.Context(), "1", demo(t)); !errors.Is(err, ErrFleetOpen) {
		t.Errorf("another replica after the failed probe: got %v, want ErrFleetOpen", err)
	}
	if got := fake.Requests(); got != 1 {
		t.Errorf("upstream requests: got %d, want 1", got)
	}
}

// TestFleetHalfOpenTakesTheLease: a reporter's half-open trial call is the
// fleet's probe: while another replica holds the lease it fails fast.
func TestFleetHalfOpenTakesTheLease(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	fleet := newFakeFleet()
	const open = 50 * time.Millisecond
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 1, OpenTimeout: open})
	c.Fetch(t.Context(), "1", demo(t)) // trips
	fake.SetFault(upstreamtest.FaultNone)
	fleet.holdProbe("other", time.Minute)
	testkit.Await(t, "the breaker to go half-open", func() bool { return c.State() == BreakerHalfOpen })
	c.fleet.refresh(t.Context())

	sent := fake.Requests()
	if _, err := c.Fetch(t.Context(), "1", demo(t)); !errors.Is(err, ErrBreakerOpen) || !errors.Is(err, ErrFleetOpen) {
		t.Fatalf("half-open with the lease held elsewhere: got %v, want ErrBreakerOpen and ErrFleetOpen", err)
	}
	if got := fake.Requests(); got != sent {
		t.Errorf("upstream requests: got %d, want %d (none sent)", got, sent)
	}
	if got := c.RetryAfter(); got < 59*time.Second {
		t.Errorf("RetryAfter: got %v, want the lease's minute", got)
	}

	fleet.holdProbe("", 0) // lapses
	c.fleet.refresh(t.Context())
	if resp, err := c.Fetch(t.Context(), "1", demo(t)); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("half-open with the lease free: got (%v, %v), want 200", resp, err)
	}
	if got := c.State(); got != BreakerClosed {
		t.Errorf("own breaker after its probe: got %s, want closed", got)
	}
	if got := fleet.count("Clear"); got != 1 {
		t.Errorf("Clear calls: got %d, want 1", got)
	}
}

// TestFleetRedisDownIsOnItsOwn: with every call to the record failing, a
// replica behaves as without the hint, whatever it saw before.
func TestFleetRedisDownIsOnItsOwn(t *testing.T) {
	fake := newFake(t)
	fake.SetFault(upstreamtest.FaultServerError)
	fleet := newFakeFleet()
	fleet.report("a", time.Minute)
	fleet.report("b", time.Minute)
	fleet.holdProbe("a", time.Minute)
	c := fleetClient(t, fake, fleet, "me", BreakerOptions{ConsecutiveFailures: 3, OpenTimeout: time.Minute})
	fleet.setErr(errors.New("redis down"))
	c.fleet.refresh(t.Context())

	for i := range 3 {
		if got := c.State(); got != BreakerClosed {
			t.Fatalf("own breaker after %d failures of 3: got %s, want closed", i, got)
		}
		resp, err := c.Fetch(t.Context(), "1", demo(t))
		if err != nil || resp.Status != http.StatusInternalServerError {
			t.Fatalf("Fetch %d: got (%v, %v), want the 500", i, resp, err)
		}
	}
	if got := c.State(); got != BreakerOpen {
		t.Errorf("own breaker after 3 failures: got %s, want open", got)
	}
	if got := c.FleetState(); got != BreakerClosed {
		t.Errorf("FleetState with Redis down: got %s, want closed", got)
	}
	// The report Redis refused is tried again once it answers.
	fleet.setErr(nil)
	testkit.Go(t, c.RunFleet)
	testkit.Await(t, "the report to be retried", func() bool {
		for _, id := range fleet.live() {
			if id == "me" {
				return true
			}
		}
		return false
	})
}

func TestFleetOnChange(t *testing.T) {
	fake := newFake(t)
	fleet := newFakeFleet()
	type shown struct {
		reports int
		state   BreakerState
	}
	var (
		mu  sync.Mutex
		got []shown
	)
	c := newClient(t, Options{BaseURL: fake.URL, Fleet: fleet.member("me"), FleetQuorum: 2,
		Breaker: BreakerOptions{OpenTimeout: time.Minute},
		OnFleetChange: func(reports int, state BreakerState) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, shown{reports, state})
		}})
	fleet.report("a", time.Minute)
	c.fleet.refresh(t.Context())
	fleet.report("b", time.Minute)
	c.fleet.refresh(t.Context())
	c.Fetch(t.Context(), "1", demo(t)) // the probe: succeeds and clears
	want := []shown{{1, BreakerClosed}, {2, BreakerOpen}, {2, BreakerHalfOpen}, {2, BreakerOpen}, {0, BreakerClosed}}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("OnFleetChange calls: got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("OnFleetChange calls: got %v, want %v", got, want)
		}
	}
}

func TestFleetQuorumValidated(t *testing.T) {
	if _, err := New(Options{BaseURL: "http://127.0.0.1:1", FleetQuorum: -1}); err == nil {
		t.Error("New with FleetQuorum -1: got nil error, want one")
	}
	c := newClient(t, Options{BaseURL: "http://127.0.0.1:1", Fleet: newFakeFleet().member("me")})
	if c.fleet.quorum != DefaultFleetQuorum {
		t.Errorf("default quorum: got %d, want %d", c.fleet.quorum, DefaultFleetQuorum)
	}
}
