// Package fakeupstream is a fake of the upstream API for the demo and
// tests: the CommPeak Dialer Core API's user endpoints, faithful to the seed
// page ("Get user"): HTTP Basic auth, a JSON array holding one user object
// with all 24 documented fields, every scalar a string. It serves the
// proxy's demo mode, cmd/fakeupstream and benchmarks as a plain
// http.Handler; tests start it on an httptest server through package
// upstreamtest.
//
// Each credential maps to a tenant; tenants see different (deterministic)
// data for the same id, so a response leaked across credentials is
// detectable. Runtime switches (SetFault, SetLatency) and counters
// (Requests, RequestsFor, Writes) let tests drive and observe it, in process
// or, through the /_fake/ control endpoints, from another process:
//
//	POST /_fake/fault?mode=hang    SetFault (modes as ParseFault)
//	POST /_fake/latency?d=20ms     SetLatency (time.ParseDuration)
//	GET  /_fake/stats              Stats as JSON
//	POST /_fake/reset              ResetCounts
//
// The control endpoints have no authentication, so they answer only clients
// on a loopback address (403 otherwise); the fake is meant to listen on
// 127.0.0.1 anyway. Each answers JSON (the new Stats on success); a bad
// query is 400, a wrong method 405.
//
// The package imports no other package of the project, and neither testing
// nor net/http/httptest: the production binary links it for its demo mode,
// and cmd/userproxy's TestBinaryLinksNoTestPackages keeps it that way.
package fakeupstream

import (
	"bytes"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Credential is one API user the fake accepts, with the tenant whose data it sees.
type Credential struct {
	Username, Password, Tenant string
}

// DemoCredentials returns the credentials a zero Options accepts: user
// "demo" (password "demo-password") of tenant "acme" and user "demo2"
// (password "demo2-password") of tenant "globex". They are public test
// values, safe to print.
func DemoCredentials() []Credential {
	return []Credential{
		{Username: "demo", Password: "demo-password", Tenant: "acme"},
		{Username: "demo2", Password: "demo2-password", Tenant: "globex"},
	}
}

// Options configures a Handler. Zero values are documented defaults.
type Options struct {
	// Credentials are the accepted API users. Nil or empty means
	// DemoCredentials(). A later entry with the same Username replaces an
	// earlier one. Several users may share a tenant (and so its data).
	Credentials []Credential
	// Users is the number of seeded users per tenant, ids "1".."N".
	// Zero or negative means 50.
	Users int
	// Latency is added before answering each /api/ request. Zero or
	// negative means none. SetLatency changes it at run time.
	Latency time.Duration
	// Lazy builds each seeded user when it is first needed instead of in
	// NewHandler, then keeps it, so a fake with hundreds of thousands of
	// users per tenant starts at once (load tests). Answers are the same
	// either way: a seeded user is deterministic. False (the zero value)
	// builds every user in NewHandler.
	Lazy bool
}

// defaultUsers is small enough to build instantly and large enough for
// tests that spread load over several keys.
const defaultUsers = 50

// Handler is the fake upstream as an http.Handler, with runtime switches.
// Safe for concurrent use. Create it with NewHandler; the zero value is not
// usable.
//
// Routes:
//
//	GET|HEAD /api/users/{id}   the user, as a one-element JSON array (faults apply)
//	PUT      /api/users/{id}   merge a JSON object's string fields into the user
//	DELETE   /api/users/{id}   soft-delete: is_deleted becomes "1"
//	POST     /api/users        create the tenant's next user from a JSON object
//	PUT      …/hook/users/{id} the webhook module's update: as PUT /api/users/{id}
//	PUT      /api/roles/{id}   rename role {id} ({"name":"…"}) in every user that has it
//	         /_fake/...        control endpoints, loopback clients only (see the package doc)
//
// Like the real API, it reads user ids as numbers: /api/users/01 is user 1.
//
// Every /api/ route requires Basic auth first (401 otherwise), then waits
// the configured latency; faults apply to authenticated GETs only, so a
// request with bad credentials still gets 401. Anything else is a JSON 404
// (or 405 for a wrong method on a known path).
type Handler struct {
	creds map[string]Credential // by username; read-only after NewHandler

	latency atomic.Int64 // time.Duration
	fault   atomic.Int64 // Fault

	requests atomic.Int64
	writes   atomic.Int64
	hanging  atomic.Int64 // requests currently held by FaultHang

	countMu sync.Mutex // protects perID
	perID   map[string]int64

	mu     sync.RWMutex                // protects users and nextID
	users  map[string]map[string]*user // tenant → id → user
	nextID map[string]int              // tenant → id the next POST creates

	// lazySeeded is the number of seeded users per tenant not built by
	// NewHandler but on first lookup (Options.Lazy); 0 when eager.
	// Read-only after NewHandler.
	lazySeeded int

	oversize func() []byte // builds the FaultOversize body once, on first use

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: ends hangs, latency waits and slow bodies

	// Test hooks, nil/zero outside this package's tests.
	testHookHang    func()        // called when a request starts hanging
	testHookHangEnd func()        // called when a hanging request is released
	slowInterval    time.Duration // overrides slowBodyInterval when > 0
}

// NewHandler returns a Handler with opts' users seeded for every tenant and
// each body precomputed (on first use with opts.Lazy), so repeated GETs are
// byte-identical.
func NewHandler(opts Options) *Handler {
	creds := opts.Credentials
	if len(creds) == 0 {
		creds = DemoCredentials()
	}
	n := opts.Users
	if n <= 0 {
		n = defaultUsers
	}
	h := &Handler{
		creds:  make(map[string]Credential, len(creds)),
		perID:  make(map[string]int64),
		users:  make(map[string]map[string]*user),
		nextID: make(map[string]int),
		closed: make(chan struct{}),
	}
	for _, c := range creds {
		h.creds[c.Username] = c
	}
	for _, c := range h.creds {
		if _, ok := h.users[c.Tenant]; ok {
			continue
		}
		byID := make(map[string]*user)
		if !opts.Lazy {
			for i := 1; i <= n; i++ {
				id := strconv.Itoa(i)
				byID[id] = newUser(c.Tenant, id)
			}
		}
		h.users[c.Tenant] = byID
		h.nextID[c.Tenant] = n + 1
	}
	if opts.Lazy {
		h.lazySeeded = n
	}
	h.oversize = sync.OnceValue(buildOversize)
	h.SetLatency(opts.Latency)
	return h
}

// SetLatency sets the delay added before answering each /api/ request.
// Zero or negative means none. In-flight waits keep their old delay.
func (h *Handler) SetLatency(d time.Duration) {
	h.latency.Store(int64(max(d, 0)))
}

// SetFault sets the fault applied to authenticated GET /api/users/{id}
// requests from now on. FaultNone turns faults off.
func (h *Handler) SetFault(f Fault) {
	h.fault.Store(int64(f))
}

// Requests returns how many GET (and HEAD) /api/users/* requests arrived
// since creation or ResetCounts, whatever their outcome (401, 404, faults).
func (h *Handler) Requests() int64 { return h.requests.Load() }

// Writes returns how many PUT /api/users/* and POST /api/users requests
// arrived since creation or ResetCounts, whatever their outcome.
func (h *Handler) Writes() int64 { return h.writes.Load() }

// RequestsFor returns how many of Requests were for id; 0 for an id never asked.
func (h *Handler) RequestsFor(id string) int64 {
	h.countMu.Lock()
	defer h.countMu.Unlock()
	return h.perID[id]
}

// ResetCounts sets Requests, RequestsFor and Writes back to zero. Fault,
// latency and user data are unchanged.
func (h *Handler) ResetCounts() {
	h.countMu.Lock()
	defer h.countMu.Unlock()
	h.requests.Store(0)
	h.writes.Store(0)
	clear(h.perID)
}

// User returns a copy of the exact body a GET of id by a credential of
// tenant would return now (without faults), and false if tenant has no
// such user.
func (h *Handler) User(tenant, id string) ([]byte, bool) {
	u, ok := h.lookup(tenant, id)
	if !ok {
		return nil, false
	}
	return bytes.Clone(u.body), true
}

// Close ends every request held by FaultHang, a latency wait or
// FaultSlowBody, and makes later ones end at once; the handler otherwise
// keeps answering. Released requests get no response: the handler panics
// with http.ErrAbortHandler, which net/http turns into a dropped
// connection. Call it before http.Server.Shutdown so shutdown does not wait
// on hung requests. Safe to call more than once.
func (h *Handler) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
}

// lookup returns tenant's user id. The returned user must not be modified.
func (h *Handler) lookup(tenant, id string) (*user, bool) {
	h.mu.RLock()
	u, ok := h.users[tenant][id]
	h.mu.RUnlock()
	if ok || !h.isLazySeed(id) {
		return u, ok
	}
	// Build outside the lock (it takes tens of microseconds), then keep
	// whichever user got there first: another lookup's, or a PUT's.
	built := newUser(tenant, id)
	h.mu.Lock()
	defer h.mu.Unlock()
	byID, ok := h.users[tenant]
	if !ok {
		return nil, false
	}
	if u, ok := byID[id]; ok {
		return u, true
	}
	byID[id] = built
	return built, true
}

// isLazySeed reports whether id is a seeded user that Options.Lazy left
// to be built on first use: a canonical decimal ("7", not "07" or "+7") in
// 1..lazySeeded. It does not check that a tenant exists.
func (h *Handler) isLazySeed(id string) bool {
	if h.lazySeeded == 0 {
		return false
	}
	n, err := strconv.Atoi(id)
	return err == nil && n >= 1 && n <= h.lazySeeded && strconv.Itoa(n) == id
}
