package capacity

import (
	"context"
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/redistest"
)

// setScript is a copy of cache/redis.go's setScript, which is not
// exported; TestThroughput checks that Redis knows this copy's SHA once the
// store has run its own, so a stale copy fails the measurement.
const setScript = `
local gen = redis.call('GET', KEYS[1])
if not gen then gen = '0' end
if gen ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
local genTTL = redis.call('PTTL', KEYS[1])
if genTTL == -2 then
  redis.call('SET', KEYS[1], '0', 'PX', ttl)
elseif genTTL >= 0 and genTTL < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`

// benchRPS parses redis-benchmark --csv output and returns the requests
// per second of its one test.
func benchRPS(out string) (float64, error) {
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return 0, fmt.Errorf("parsing redis-benchmark output: %w", err)
	}
	for _, r := range recs {
		if len(r) >= 2 && r[0] != "test" {
			return strconv.ParseFloat(r[1], 64)
		}
	}
	return 0, fmt.Errorf("no result in redis-benchmark output %q", out)
}

// perNode is what one node serves, in requests per second, when a share
// redisHit of the requests that reach it are hits (one MGET each) and the
// rest misses (one MGET and one set script each, plus one lease SET NX
// when lease is set), given each command's rate measured alone.
func perNode(redisHit, mget, set, lease float64) float64 {
	cost := redisHit/mget + (1-redisHit)*(1/mget+1/set)
	if lease > 0 {
		cost += (1 - redisHit) / lease
	}
	return 1 / cost
}

func TestBenchRPS(t *testing.T) {
	out := "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\"\n\"MGET a b\",\"81234.56\",\"0.350\",\"0.100\",\"0.343\"\n"
	got, err := benchRPS(out)
	if err != nil || got != 81234.56 {
		t.Errorf("got %v, %v; want 81234.56, nil", got, err)
	}
	if _, err := benchRPS("\"test\",\"rps\"\n"); err == nil {
		t.Error("header only: got nil error, want one")
	}
}

func TestPerNode(t *testing.T) {
	// All hits: the MGET rate.
	near := func(got, want float64) bool { return math.Abs(got-want) < 0.5 }
	if got := perNode(1, 100000, 50000, 0); !near(got, 100000) {
		t.Errorf("all hits: got %v, want 100000", got)
	}
	// All misses: 1/(1/100k + 1/50k) = 33,333.
	if got := perNode(0, 100000, 50000, 0); !near(got, 33333.3) {
		t.Errorf("all misses: got %v, want 33333", got)
	}
	// The lease adds its cost to misses only.
	if got := perNode(0, 100000, 50000, 100000); !near(got, 25000) {
		t.Errorf("all misses with the lease: got %v, want 25000", got)
	}
	if got := perNode(1, 100000, 50000, 100000); !near(got, 100000) {
		t.Errorf("all hits with the lease: got %v, want 100000", got)
	}
}

// TestThroughput runs redis-benchmark against one redis-server with the
// commands of a Redis-read hit (MGET of the generation and entry keys), of
// a miss (the same MGET missing, then the set script) and of a bare SET NX
// PX (the core of the fill lease's script), each alone, twice.
func TestThroughput(t *testing.T) {
	requireMeasure(t)
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("no redis-benchmark (Debian: redis-tools)")
	}
	srv := redistest.Start(t)
	host, port, _ := strings.Cut(srv.Addr(), ":")
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rc.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	// 10,000 users, one scope, as redis-benchmark names them: -r 10000
	// replaces __rand_int__ by a 12-digit number below 10000.
	const keyspace = 10000
	store := cache.NewRedis(rc, cache.RedisOptions{})
	now := time.Now()
	e := cache.Entry{Status: 200, ContentType: "application/json", Body: typicalBody(t), Header: etagOnly(), Stored: now, Expires: now.Add(time.Hour)}
	hitScope, missScope := scopeOf(1), scopeOf(2)
	for i := range keyspace {
		if err := store.Set(ctx, cache.Key{ID: fmt.Sprintf("%012d", i), Scope: hitScope}, e, time.Hour, 0); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha1.Sum([]byte(setScript))
	sha := hex.EncodeToString(sum[:])
	if ok, err := rc.ScriptExists(ctx, sha).Result(); err != nil || !ok[0] {
		t.Fatalf("Redis does not know this copy of setScript (%v): copy cache/redis.go's setScript again", err)
	}
	// A printable value as long as the encoded typical entry (argv cannot
	// carry the NUL bytes of the real encoding); Redis pays for its length.
	value := strings.Repeat("v", len(e.AppendBinary(nil, 0)))
	ttl := strconv.Itoa(int(time.Hour.Milliseconds()))

	mixes := []struct {
		name string
		argv []string
	}{
		{"hit: MGET gen+entry (found)", []string{"MGET", "userproxy:{__rand_int__}:gen", "userproxy:{__rand_int__}:" + hitScope}},
		{"miss, lookup: MGET gen+entry (missing)", []string{"MGET", "userproxy:{__rand_int__}:gen", "userproxy:{__rand_int__}:" + missScope}},
		{"miss, store: EVALSHA set script (~730 B)", []string{"EVALSHA", sha, "2", "userproxy:{__rand_int__}:gen", "userproxy:{__rand_int__}:" + missScope, "0", value, ttl}},
		{"bare SET NX PX (the lease script's core)", []string{"SET", "userproxy:{__rand_int__}:lease", "0123456789abcdef", "NX", "PX", "3000"}},
	}
	rates := map[string][]float64{}
	for run := 1; run <= 2; run++ {
		for _, pipeline := range []int{1, 16} {
			for _, m := range mixes {
				if pipeline > 1 && !strings.HasPrefix(m.name, "hit") {
					continue // the proxy batches reads only
				}
				// -p always: redis-benchmark's default is 6379, which is
				// never ours.
				args := append([]string{"-h", host, "-p", port, "-c", "32", "-n", "200000", "-r", strconv.Itoa(keyspace), "-P", strconv.Itoa(pipeline), "--csv"}, m.argv...)
				out, err := exec.CommandContext(ctx, bench, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("redis-benchmark: %v\n%s", err, out)
				}
				rps, err := benchRPS(string(out))
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%s, -P %d", m.name, pipeline)
				rates[name] = append(rates[name], rps)
				t.Logf("run %d: %-52s %8.0f ops/s", run, name, rps)
			}
		}
	}
	// Requests per second one node carries, from the slower of the two runs.
	low := func(name string) float64 { r := rates[name]; return min(r[0], r[1]) }
	mget, mgetMiss, set, lease := low(mixes[0].name+", -P 1"), low(mixes[1].name+", -P 1"), low(mixes[2].name+", -P 1"), low(mixes[3].name+", -P 1")
	// A miss's MGET costs what a hit's does; take the slower of the two.
	mget = min(mget, mgetMiss)
	// The fill lease's real cost (two scripts per miss) is in TestRedisCPU;
	// a bare SET NX PX is its floor.
	for _, h := range []float64{1, 0.99, 0.95, 0.9, 0.8, 0.5, 0} {
		t.Logf("Redis-level hit ratio %3.0f%%: %7.0f requests/s per node; with a bare SET NX PX per miss %7.0f",
			h*100, perNode(h, mget, set, 0), perNode(h, mget, set, lease))
	}
}
