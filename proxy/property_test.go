package proxy_test

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// propertySeedEnv names the variable that fixes the property test's seed;
// unset, every run draws a new one and logs it. The random choices (who
// asks for what, faults, clock steps, writes) then repeat; the goroutine
// interleaving does not.
const propertySeedEnv = "USERPROXY_PROPERTY_SEED"

const (
	propertyWorkers = 8
	propertyOps     = 120 // per worker
	propertyUsers   = 40  // ids 1..40 exist for every tenant
	propertyIDs     = 44  // ids 41..44 are 404s
)

// propertyCreds are six API users over three tenants: two credentials of a
// tenant see the same data (different scopes, same bodies); different
// tenants see different bodies.
var propertyCreds = []upstreamtest.Credential{
	{Username: "prop-a1", Password: "pw-a1-0001", Tenant: "tenant-a"},
	{Username: "prop-a2", Password: "pw-a2-0002", Tenant: "tenant-a"},
	{Username: "prop-b1", Password: "pw-b1-0003", Tenant: "tenant-b"},
	{Username: "prop-b2", Password: "pw-b2-0004", Tenant: "tenant-b"},
	{Username: "prop-c1", Password: "pw-c1-0005", Tenant: "tenant-c"},
	{Username: "prop-c2", Password: "pw-c2-0006", Tenant: "tenant-c"},
}

// intruder has a registered username and a wrong password: the upstream
// answers it 401, and it must never be served anyone's cached body.
var intruder = upstreamtest.Credential{Username: "prop-a1", Password: "wrong-password"}

// propertyFaults are the upstream faults the workers switch between; none
// is listed often enough that the upstream is healthy about half the time.
var propertyFaults = []upstreamtest.Fault{
	upstreamtest.FaultNone, upstreamtest.FaultNone, upstreamtest.FaultNone,
	upstreamtest.FaultNone, upstreamtest.FaultNone, upstreamtest.FaultNone,
	upstreamtest.FaultServerError, upstreamtest.FaultUnavailable, upstreamtest.FaultTooManyRequests,
	upstreamtest.FaultHang, upstreamtest.FaultReset, upstreamtest.FaultMalformed,
}

func propertySeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(propertySeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", propertySeedEnv, s, err)
		}
		return seed
	}
	return rand.Uint64()
}

// propertyRun is one store's run.
type propertyRun struct {
	t      *testing.T
	e      *env
	admin  *httptest.Server
	client *http.Client
	hist   bodyHistory
	epoch  atomic.Int64 // completed writes
	putMu  sync.Mutex   // serialises writes, so every body in between is recorded
	putSeq atomic.Int64
	purges atomic.Int64
	writes atomic.Int64
}

// TestPropertyNoCrossScopeLeak drives concurrent, randomized traffic (six
// credentials over three tenants, an intruder, 44 ids) while the workers
// also switch upstream faults, write users through the proxy, purge users
// through the admin endpoint and move the clock, with stale-while-revalidate
// and stale-if-error on. Invariant for every answer:
//
//   - a 200's body is one the upstream gave that credential's tenant for that
//     id at some point — never another tenant's, never to the intruder;
//   - that body was not replaced by a write that completed before the
//     request was sent, not even when the request joined a fill already in
//     flight (collapsed): an invalidated entry is served neither fresh nor
//     stale;
//   - anything marked stale says fwd=stale;
//   - a non-200 is the proxy's JSON error (429, 502, 503, 504), the
//     upstream's 404 for an id that does not exist, or its 401 for the
//     intruder.
//
// At the end, with the upstream healthy and every entry past stale-if-error,
// each credential gets exactly the upstream's current body for every id,
// and the intruder is still refused for every cached user.
func TestPropertyNoCrossScopeLeak(t *testing.T) {
	seed := propertySeed(t)
	t.Logf("seed %d; rerun this exact choice sequence with %s=%d go test -race -run '^%s$' ./proxy",
		seed, propertySeedEnv, seed, t.Name())
	forEachStore(t, func(t *testing.T, newEnv func(envOptions) *env) {
		e := newEnv(envOptions{
			upstream: upstreamtest.Options{Credentials: propertyCreds, Users: propertyUsers},
			timeout:  150 * time.Millisecond,
			breaker:  upstream.BreakerOptions{ConsecutiveFailures: 8, OpenTimeout: 20 * time.Millisecond},
		})
		p := &propertyRun{t: t, e: e, admin: adminServer(t, e, adminToken), hist: bodyHistory{versions: map[[32]byte]*version{}}}
		p.client = &http.Client{Transport: e.srv.Client().Transport, Timeout: 10 * time.Second}
		for _, c := range propertyCreds {
			for i := 1; i <= propertyUsers; i++ {
				k := bodyKey{c.Tenant, strconv.Itoa(i)}
				p.hist.add(t, k, []byte(e.userBody(c, k.id)))
			}
		}

		results := make([][]observation, propertyWorkers)
		var wg sync.WaitGroup
		for w := range propertyWorkers {
			wg.Go(func() { results[w] = p.worker(rand.New(rand.NewPCG(seed, uint64(w)))) })
		}
		// One purge of everything while the workers run.
		wg.Go(func() {
			if code, body := p.admin1(http.MethodDelete, "/admin/cache"); code != http.StatusOK {
				t.Errorf("purge everything: got %d %q, want 200", code, body)
			}
		})
		wg.Wait()

		stats := map[string]int{}
		for _, obs := range results {
			for _, o := range obs {
				p.check(o, stats)
			}
		}
		t.Logf("%d writes, %d purges; outcomes %v", p.writes.Load(), p.purges.Load(), stats)
		for _, what := range []string{"hit", "stale", "miss", "error"} {
			if stats[what] == 0 {
				t.Errorf("no %s answer in the run: the traffic did not exercise that path (outcomes %v)", what, stats)
			}
		}
		p.finalSweep()
	}, freshEnv)
}

// worker runs propertyOps random operations and returns the GETs it saw.
// A fault it sets lasts at most faultOps of its own operations. With eight
// workers setting faults at random and faults lasting until one picked
// FaultNone, some seeds kept the upstream failing (its breaker open) for
// most of a run, which then had no hit or no stale answer to check: seed
// 1891568823786831349 failed that way 2 times in 3, on this code and on
// d40aad0. Healing after 8 operations still failed it 1 time in 4; after
// 3, 0 in 12, and 12 random seeds kept 36-653 errors, 12-112 hits and
// 11-108 stale answers per store.
func (p *propertyRun) worker(rng *rand.Rand) []observation {
	const faultOps = 3
	var obs []observation
	healAt := -1
	for i := range propertyOps {
		if i == healAt {
			p.e.up.SetFault(upstreamtest.FaultNone)
		}
		switch n := rng.IntN(100); {
		case n < 74:
			obs = append(obs, p.randomGet(rng, ""))
		case n < 78:
			obs = append(obs, p.randomGet(rng, "no-cache"))
		case n < 80:
			obs = append(obs, p.randomGet(rng, "no-store"))
		case n < 85:
			p.write(rng)
		case n < 88:
			id := randomID(rng)
			if code, body := p.admin1(http.MethodDelete, "/admin/cache/users/"+id); code != http.StatusOK {
				p.t.Errorf("purge user %s: got %d %q, want 200", id, code, body)
			}
			p.purges.Add(1)
		case n < 96:
			p.e.clock.Advance(time.Duration(1+rng.IntN(45)) * time.Second)
		default:
			p.e.up.SetFault(propertyFaults[rng.IntN(len(propertyFaults))])
			healAt = i + faultOps
		}
	}
	return obs
}

// randomID is a random id of 1..propertyIDs, half the time one of a hot
// few, so that entries are hit, expire and go stale while traffic lasts.
func randomID(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return strconv.Itoa(1 + rng.IntN(6))
	}
	return strconv.Itoa(1 + rng.IntN(propertyIDs))
}

// randomGet sends one GET as a random credential (now and then the
// intruder) for a random id, with Cache-Control cc if not empty.
func (p *propertyRun) randomGet(rng *rand.Rand, cc string) observation {
	o := observation{cred: rng.IntN(len(propertyCreds)), id: randomID(rng)}
	cred := propertyCreds[o.cred]
	if rng.IntN(12) == 0 {
		o.cred, cred = -1, intruder
	}
	req, _ := http.NewRequest(http.MethodGet, p.e.srv.URL+"/api/users/"+o.id, nil)
	req.SetBasicAuth(cred.Username, cred.Password)
	if cc != "" {
		req.Header.Set("Cache-Control", cc)
	}
	o.startEpoch = p.epoch.Load()
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Errorf("GET %s as %s: %v", o.id, cred.Username, err)
		return o
	}
	defer resp.Body.Close()
	o.body, err = io.ReadAll(resp.Body)
	if err != nil {
		p.t.Errorf("GET %s as %s: reading the body: %v", o.id, cred.Username, err)
	}
	o.status, o.cacheStatus = resp.StatusCode, resp.Header.Get("Cache-Status")
	return o
}

// write changes a random existing user through the proxy, recording the
// body before and after. Writes are serialised so no intermediate body
// goes unrecorded; reads run concurrently with them.
func (p *propertyRun) write(rng *rand.Rand) {
	cred := propertyCreds[rng.IntN(len(propertyCreds))]
	id := randomID(rng)
	if n, _ := strconv.Atoi(id); n > propertyUsers {
		id = "1" // writes go to users that exist
	}
	k := bodyKey{cred.Tenant, id}
	patch, _ := json.Marshal(map[string]string{
		"first_name":   "Written" + strconv.FormatInt(p.putSeq.Add(1), 10),
		"is_clockedin": strconv.Itoa(rng.IntN(2)),
	})
	p.putMu.Lock()
	defer p.putMu.Unlock()
	before, _ := p.e.up.User(k.tenant, id)
	req, _ := http.NewRequest(http.MethodPut, p.e.srv.URL+"/api/users/"+id, strings.NewReader(string(patch)))
	req.SetBasicAuth(cred.Username, cred.Password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Errorf("PUT %s: %v", id, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	after, _ := p.e.up.User(k.tenant, id)
	if resp.StatusCode != http.StatusOK {
		p.t.Errorf("PUT %s as %s: got %d, want 200 (writes see no faults)", id, cred.Username, resp.StatusCode)
	}
	p.hist.add(p.t, k, after)
	// The PUT has returned, so its invalidation has happened: a request
	// sent from now on must not see the old body.
	p.hist.supersede(before, p.epoch.Add(1))
	p.writes.Add(1)
}

// admin1 sends one request to the admin listener with the admin token.
func (p *propertyRun) admin1(method, path string) (int, string) {
	req, _ := http.NewRequest(method, p.admin.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
