package proxy_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/testkit"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// The bookkeeping and the invariants of TestPropertyNoCrossScopeLeak.

// bodyKey names one user of one tenant.
type bodyKey struct{ tenant, id string }

// version is one body the upstream has given for a bodyKey.
type version struct {
	key          bodyKey
	supersededAt int64 // epoch of the write that replaced it; 0 while current
}

// bodyHistory is every body the upstream has ever given, by hash.
type bodyHistory struct {
	mu       sync.Mutex // protects versions
	versions map[[32]byte]*version
}

func (h *bodyHistory) add(t *testing.T, k bodyKey, body []byte) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	sum := sha256.Sum256(body)
	if v, ok := h.versions[sum]; ok && v.key != k {
		t.Errorf("the fake gives %v and %v the same body; a cross-tenant leak would be invisible", v.key, k)
		return
	}
	h.versions[sum] = &version{key: k}
}

func (h *bodyHistory) supersede(body []byte, epoch int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.versions[sha256.Sum256(body)]; ok && v.supersededAt == 0 {
		v.supersededAt = epoch
	}
}

func (h *bodyHistory) lookup(sum [32]byte) (version, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.versions[sum]
	if !ok {
		return version{}, false
	}
	return *v, true
}

// observation is one GET a worker sent and what it got.
type observation struct {
	cred        int // index in propertyCreds, -1 for intruder
	id          string
	startEpoch  int64 // writes completed before the request was sent
	status      int
	cacheStatus string
	body        []byte
}

// check verifies one observation against the invariants and counts its
// outcome in stats.
func (p *propertyRun) check(o observation, stats map[string]int) {
	t := p.t
	if o.status == 0 {
		return // transport error, already reported
	}
	who := "intruder"
	tenant := ""
	if o.cred >= 0 {
		who, tenant = propertyCreds[o.cred].Username, propertyCreds[o.cred].Tenant
	}
	id, _ := strconv.Atoi(o.id)
	desc := fmt.Sprintf("GET %s as %s (epoch %d): %d %q", o.id, who, o.startEpoch, o.status, o.cacheStatus)
	if strings.Contains(o.cacheStatus, "stale") && !strings.Contains(o.cacheStatus, "fwd=stale") {
		t.Errorf("%s: stale but not marked fwd=stale", desc)
	}
	switch o.status {
	case http.StatusOK:
		switch cs := o.cacheStatus; {
		case strings.Contains(cs, "fwd=stale"):
			stats["stale"]++
		case strings.HasPrefix(cs, "userproxy; hit"):
			stats["hit"]++
		default:
			stats["miss"]++
		}
		if o.cred < 0 {
			t.Errorf("%s: the intruder (wrong password) was served a body", desc)
			return
		}
		v, ok := p.hist.lookup(sha256.Sum256(o.body))
		switch {
		case !ok:
			t.Errorf("%s: body %.80q is nothing the upstream ever gave", desc, o.body)
		case v.key.tenant != tenant:
			t.Errorf("%s: CROSS-TENANT LEAK: got the body of %v, want one of tenant %s", desc, v.key, tenant)
		case v.key.id != o.id:
			t.Errorf("%s: got the body of user %s", desc, v.key.id)
		case v.supersededAt != 0 && v.supersededAt <= o.startEpoch:
			t.Errorf("%s: got a body replaced by write %d, which completed before this request was sent", desc, v.supersededAt)
		}
	case http.StatusUnauthorized:
		stats["401"]++
		if o.cred >= 0 {
			t.Errorf("%s: a valid credential was refused", desc)
		}
		wantJSONBody(t, desc, o.body)
	case http.StatusNotFound:
		stats["404"]++
		if o.cred < 0 || id <= propertyUsers {
			t.Errorf("%s: 404, want it only for valid credentials and ids above %d", desc, propertyUsers)
		}
		wantJSONBody(t, desc, o.body)
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		stats["error"]++
		stats[o.cacheStatus]++
		var e struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if err := json.Unmarshal(o.body, &e); err != nil || e.Error == "" || e.Status != o.status {
			t.Errorf("%s: body %q, want {\"error\":...,\"status\":%d}", desc, o.body, o.status)
		}
	default:
		t.Errorf("%s: unexpected status (body %.80q)", desc, o.body)
	}
}

func wantJSONBody(t *testing.T, desc string, body []byte) {
	t.Helper()
	if !json.Valid(body) {
		t.Errorf("%s: body %q is not JSON", desc, body)
	}
}

// finalSweep: upstream healthy, every entry past stale-if-error; each
// credential must get exactly the upstream's current body for every id.
func (p *propertyRun) finalSweep() {
	t, e := p.t, p.e
	e.up.SetFault(upstreamtest.FaultNone)
	e.clock.Advance(2 * time.Hour)
	testkit.Await(t, "the upstream breaker to close", func() bool {
		return e.get("1", propertyCreds[0]).status == http.StatusOK
	})
	for _, c := range propertyCreds {
		for i := 1; i <= propertyUsers; i++ {
			id := strconv.Itoa(i)
			r := e.get(id, c)
			if want := e.userBody(c, id); r.status != http.StatusOK || r.body != want {
				t.Errorf("final GET %s as %s: got %d %q (%.80q), want 200 and the upstream's current body", id, c.Username, r.status, r.header.Get("Cache-Status"), r.body)
			}
		}
	}
	// Every user is now cached and fresh for every credential: the
	// intruder, with a right username and a wrong password, must still be
	// turned away by the upstream, not served from the cache.
	for i := 1; i <= propertyUsers; i++ {
		if r := e.get(strconv.Itoa(i), intruder); r.status != http.StatusUnauthorized {
			t.Errorf("final GET %d as the intruder: got %d %q, want the upstream's 401", i, r.status, r.header.Get("Cache-Status"))
		}
	}
}
