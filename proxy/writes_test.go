package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// replicaKinds build two stores over one backend, as two replicas of the
// proxy share one Redis (each with its own client and, for the tier, its
// own in-process tier). The embedded store is one process's: both
// "replicas" share the instance.
var replicaKinds = []struct {
	name string
	new  func(t *testing.T, clock *testkit.Clock) (a, b readthrough.Store)
}{
	{"memory", func(t *testing.T, clock *testkit.Clock) (readthrough.Store, readthrough.Store) {
		m := cache.NewMemory(cache.MemoryOptions{})
		return m, m
	}},
	{"miniredis", func(t *testing.T, clock *testkit.Clock) (readthrough.Store, readthrough.Store) {
		url := "redis://" + miniredis.RunT(t).Addr()
		return redisStore(t, url), redisStore(t, url)
	}},
	{"redis-server", func(t *testing.T, clock *testkit.Clock) (readthrough.Store, readthrough.Store) {
		url := redistest.Start(t).URL()
		return batchedRedisStore(t, url), batchedRedisStore(t, url)
	}},
	{"redis-server+l1", func(t *testing.T, clock *testkit.Clock) (readthrough.Store, readthrough.Store) {
		url := redistest.Start(t).URL()
		return tieredStore(t, url, clock), tieredStore(t, url, clock)
	}},
}

// replicas are two proxies over one store backend and one upstream.
type replicas struct {
	t    *testing.T
	a, b *env
}

func newReplicas(t *testing.T, newStores func(t *testing.T, clock *testkit.Clock) (readthrough.Store, readthrough.Store)) *replicas {
	clock := newTestClock() // one for both replicas and their tiers
	sa, sb := newStores(t, clock)
	// Stale-if-error on: an invalidated entry must not come back as a
	// stand-in when the upstream fails (readDuringOutage).
	staleIfError := func(o *readthrough.Options) { o.StaleIfError = time.Hour }
	a := newEnv(t, sa, envOptions{engine: staleIfError, clock: clock})
	b := newEnv(t, sb, envOptions{engine: staleIfError, clock: clock, shareUpstream: a.up})
	return &replicas{t: t, a: a, b: b}
}

// settled waits until every tier of the pair has heard of n more
// invalidations than before (before from invalidationsHeard): the
// documented bound for another replica's tier is the pub/sub delivery.
func (r *replicas) settled(before []uint64, n uint64) {
	r.t.Helper()
	for i, e := range []*env{r.a, r.b} {
		if tier, ok := e.store.(*cache.Tiered); ok {
			testkit.Await(r.t, "the tiers to hear of the invalidation", func() bool {
				return tier.Stats().InvalidationsReceived >= before[i]+n
			})
		}
	}
}

func (r *replicas) invalidationsHeard() []uint64 {
	var out []uint64
	for _, e := range []*env{r.a, r.b} {
		var n uint64
		if tier, ok := e.store.(*cache.Tiered); ok {
			n = tier.Stats().InvalidationsReceived
		}
		out = append(out, n)
	}
	return out
}

// readAll reads every spelling of id as every credential through both
// replicas and fails on any answer that is not the upstream's current one
// (stale-if-error included).
func (r *replicas) readAll(id string, spellings []string, creds ...upstreamtest.Credential) {
	r.t.Helper()
	for _, cred := range creds {
		want, ok := r.a.up.User(cred.Tenant, id)
		for _, e := range []*env{r.a, r.b} {
			for _, sp := range spellings {
				got := e.get(sp, cred)
				cs := got.header.Get("Cache-Status")
				switch {
				case !ok && got.status != http.StatusNotFound:
					r.t.Errorf("GET %s as %s: got %d (%s), want 404", sp, cred.Username, got.status, cs)
				case ok && (got.status != http.StatusOK || got.body != string(want)):
					r.t.Errorf("GET %s as %s: got %d (%s) %.80q, want the current user %.80q", sp, cred.Username, got.status, cs, got.body, want)
				case strings.Contains(cs, "fwd=stale"):
					r.t.Errorf("GET %s as %s: served stale (%s) after the write", sp, cred.Username, cs)
				}
			}
		}
	}
}

// readDuringOutage reads every spelling of id as every credential through
// both replicas while the upstream fails: an answer may be an error, or the
// current user from the cache, but never the body the write replaced, not
// even as a stale-if-error stand-in.
func (r *replicas) readDuringOutage(id string, old map[string]string, spellings []string, creds ...upstreamtest.Credential) {
	r.t.Helper()
	r.a.up.SetFault(upstreamtest.FaultUnavailable)
	defer r.a.up.SetFault(upstreamtest.FaultNone)
	for _, cred := range creds {
		for _, e := range []*env{r.a, r.b} {
			for _, sp := range spellings {
				got := e.get(sp, cred)
				if got.status == http.StatusOK && got.body == old[cred.Username] {
					r.t.Errorf("GET %s as %s while the upstream fails: got the pre-write body (%s)", sp, cred.Username, got.header.Get("Cache-Status"))
				}
			}
		}
	}
}

// bodies is the upstream's current body of id for each credential.
func (r *replicas) bodies(id string, creds ...upstreamtest.Credential) map[string]string {
	out := map[string]string{}
	for _, c := range creds {
		b, _ := r.a.up.User(c.Tenant, id)
		out[c.Username] = string(b)
	}
	return out
}

// TestWritesReachEveryReader: after a 2xx write through any route that
// changes a user, through either replica and to any spelling of its id, no
// reader of any spelling and scope, through either replica, gets the old
// body (or a stale one), on every store.
func TestWritesReachEveryReader(t *testing.T) {
	spellings := []string{"7", "07", "007"}
	for _, rk := range replicaKinds {
		t.Run(rk.name, func(t *testing.T) {
			for _, w := range []struct {
				name, method, path, body string
				via                      func(r *replicas) *env
				invalidations            uint64 // tier messages a replica hears
			}{
				{"PUT to a spelling", http.MethodPut, "/api/users/07", `{"first_name":"Spelled"}`, (*replicas).first, 1},
				{"PUT through the other replica", http.MethodPut, "/api/users/0007", `{"first_name":"Other"}`, (*replicas).second, 1},
				{"DELETE (soft)", http.MethodDelete, "/api/users/007", "", (*replicas).first, 1},
				{"webhook", http.MethodPut, "/api/modules/webhook/hook/users/07", `{"last_name":"Hooked"}`, (*replicas).second, 1},
			} {
				t.Run(w.name, func(t *testing.T) {
					r := newReplicas(t, rk.new)
					r.readAll("7", spellings, alice, bob) // cached everywhere
					old := r.bodies("7", alice)
					before := r.invalidationsHeard()
					if got := w.via(r).do(w.method, w.path, alice, w.body); got.status != http.StatusOK {
						t.Fatalf("%s %s: got %d %q", w.method, w.path, got.status, got.body)
					}
					if r.bodies("7", alice)["demo"] == old["demo"] {
						t.Fatal("the write did not change the user upstream; the test would prove nothing")
					}
					r.settled(before, w.invalidations)
					r.readDuringOutage("7", old, spellings, alice)
					r.readAll("7", spellings, alice, bob)
				})
			}

			t.Run("role change", func(t *testing.T) {
				r := newReplicas(t, rk.new)
				r.readAll("7", spellings, alice, bob)
				r.readAll("8", []string{"8"}, alice)
				roleID := firstRole(t, r.a.userBody(alice, "7"))
				old := r.bodies("7", alice)
				before := r.invalidationsHeard()
				if got := r.b.do(http.MethodPut, "/api/roles/"+roleID, alice, `{"name":"Renamed"}`); got.status != http.StatusOK {
					t.Fatalf("PUT /api/roles/%s: got %d %q", roleID, got.status, got.body)
				}
				if !strings.Contains(r.a.userBody(alice, "7"), "Renamed") {
					t.Fatal("the role change did not reach user 7 upstream; the test would prove nothing")
				}
				r.settled(before, 2) // a purge of everything publishes twice
				r.readDuringOutage("7", old, spellings, alice)
				r.readAll("7", spellings, alice, bob)
				r.readAll("8", []string{"8"}, alice)
			})

			t.Run("create", func(t *testing.T) {
				r := newReplicas(t, rk.new)
				next := 1
				for _, ok := r.a.up.User(alice.Tenant, itoa(next)); ok; _, ok = r.a.up.User(alice.Tenant, itoa(next)) {
					next++
				}
				id := itoa(next)
				r.readAll(id, []string{id, "0" + id}, alice, bob) // 404s, cached
				before := r.invalidationsHeard()
				got := r.a.do(http.MethodPost, "/api/users", alice, `{"first_name":"New"}`)
				if got.status != http.StatusCreated || !strings.HasSuffix(got.header.Get("Location"), "/users/"+id) {
					t.Fatalf("POST /api/users: got %d, Location %q, want 201 and user %s", got.status, got.header.Get("Location"), id)
				}
				r.settled(before, 1)
				r.readAll(id, []string{id, "0" + id}, alice, bob)
			})
		})
	}
}

func (r *replicas) first() *env  { return r.a }
func (r *replicas) second() *env { return r.b }

// firstRole is the id of a role the user body holds.
func firstRole(t *testing.T, body string) string {
	t.Helper()
	var users []struct {
		Roles map[string]string `json:"roles"`
	}
	if err := json.Unmarshal([]byte(body), &users); err != nil || len(users) != 1 || len(users[0].Roles) == 0 {
		t.Fatalf("user body %.80q: want one user with a role (%v)", body, err)
	}
	for id := range users[0].Roles {
		return id
	}
	return ""
}

// TestTierOwnsTheKeysItReads: a replica's tier keeps what it reads from
// Redis under the request's key. That key must not alias the front's
// request buffer, which the next request on the connection overwrites:
// the tier would then hold an entry under a key that changes under it
// (misses for the user it holds, and in the worst case another user's
// answer under the new id).
func TestTierOwnsTheKeysItReads(t *testing.T) {
	r := newReplicas(t, replicaKinds[3].new) // redis-server+l1
	tier := r.b.store.(*cache.Tiered)
	ids := []string{"12", "34", "45", "23"}
	for _, id := range ids {
		r.a.get(id, alice) // filled and stored through a
	}
	for _, id := range ids {
		r.b.get(id, alice) // b's tier misses, reads Redis, keeps the entry
	}
	// Read again on fresh connections: the connection that carried the
	// first reads still holds the last id in its buffer, so a key that
	// aliased it would now read as that id.
	before := tier.Stats().Hits
	for _, id := range ids {
		got := getOnNewConnection(t, r.b, id, alice)
		if got != r.a.userBody(alice, id) {
			t.Errorf("GET %s through b: got %.60q, want user %s", id, got, id)
		}
	}
	if hits := tier.Stats().Hits - before; hits != uint64(len(ids)) {
		t.Errorf("tier hits on the second reads through b: got %d, want %d (the keys it kept from Redis changed under it)", hits, len(ids))
	}
}

// getOnNewConnection GETs user id from e as cred on a connection of its
// own, and returns the body.
func getOnNewConnection(t *testing.T, e *env, id string, cred upstreamtest.Credential) string {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/users/"+id, nil)
	req.SetBasicAuth(cred.Username, cred.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
