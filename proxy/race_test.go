package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// holdFirstGet answers the first GET of one user with what the upstream
// says at that moment, but only delivers it when released: a fill that
// fetched old data and is slow to come back.
type holdFirstGet struct {
	id      string
	next    http.Handler
	fetched chan struct{} // closed once the held answer is taken
	release chan struct{} // close to deliver it
	once    sync.Once
}

func (h *holdFirstGet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	held := false
	if r.Method == http.MethodGet && r.URL.Path == "/api/users/"+h.id {
		h.once.Do(func() { held = true })
	}
	if !held {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r) // the body as it is before the write
	close(h.fetched)
	<-h.release
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// TestStaleSetRace is the memcache "leases" problem, interleaved by hand:
// a fill starts, a write and its invalidation happen, then the fill comes
// back with the old body. The old body must not be stored over the write.
func TestStaleSetRace(t *testing.T) {
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		hold := &holdFirstGet{id: "30", fetched: make(chan struct{}), release: make(chan struct{})}
		e := newEnv(envOptions{wrapUpstream: func(next http.Handler) http.Handler { hold.next = next; return hold }})
		old := e.userBody(alice, "30")

		first := make(chan response, 1)
		go func() { first <- e.get("30", alice) }() // 1. the fill starts...
		<-hold.fetched                              //    ...and has read the old body
		// 2. A write through the proxy, and its invalidation.
		if r := e.do(http.MethodPut, "/api/users/30", alice, `{"is_clockedin":"1","first_name":"After"}`); r.status != http.StatusOK {
			t.Fatalf("PUT: got %d %q", r.status, r.body)
		}
		updated := e.userBody(alice, "30")
		if updated == old {
			t.Fatal("the write did not change the body; the test could not see a stale set")
		}
		close(hold.release) // 3. the fill finishes with the old body
		if r := <-first; r.body != old {
			t.Fatalf("the request that began before the write: got %q, want the body of its time", r.body)
		}
		// 4. The next read must not see the old body.
		r := e.get("30", alice)
		if r.body != updated {
			t.Errorf("after the write: got %q (%s), want the written body", r.body, r.header.Get("Cache-Status"))
		}
		e.want(r, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
		if got := testutil.ToFloat64(e.m.StaleSetRefused); got != 1 {
			t.Errorf("stale_set_refused_total: got %v, want 1", got)
		}
	})
}
