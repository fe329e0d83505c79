package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// secretFlags are the flags that may also be read from a file, via
// -<flag>-file or USERPROXY_<FLAG>_FILE, so secrets stay out of process
// listings and environment dumps.
var secretFlags = []string{"key-secret", "upstream-password", "admin-token"}

// newFlagSet registers every flag on a fresh FlagSet bound to c, with the
// defaults the README documents.
func newFlagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("userproxy", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", ":8080", "proxy listen address")
	fs.StringVar(&c.AdminListen, "admin-listen", ":9090", "admin listen address (/metrics, /healthz, /readyz)")
	fs.StringVar(&c.UpstreamURL, "upstream-url", "", "upstream base URL, e.g. https://acme.td.commpeak.com (required unless -demo)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL: redis://, rediss://, redis-sentinel://, redis-cluster:// (empty = embedded in-process store, not shared between replicas)")
	fs.StringVar(&c.KeySecret, "key-secret", "", "HMAC key for credential scopes, at least 16 bytes (required with -redis-url; random per process otherwise)")
	fs.StringVar(&c.AuthMode, "auth-mode", "passthrough", "passthrough (callers' Basic credentials are forwarded) or inject (-upstream-username/-upstream-password are sent)")
	fs.StringVar(&c.UpstreamUsername, "upstream-username", "", "upstream API username (inject mode)")
	fs.StringVar(&c.UpstreamPassword, "upstream-password", "", "upstream API password (inject mode)")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 60*time.Second, "fresh lifetime of a cached user")
	fs.DurationVar(&c.NegativeTTL, "negative-ttl", 10*time.Second, "lifetime of a cached 404")
	fs.DurationVar(&c.SWR, "stale-while-revalidate", 30*time.Second, "how long past expiry a user is still served at once while one background refresh runs (0 = off)")
	fs.DurationVar(&c.StaleTTL, "stale-ttl", time.Hour, "how long past expiry a user may be served when the upstream fails or the breaker is open (0 = off)")
	fs.Float64Var(&c.TTLJitter, "ttl-jitter", 0.1, "shorten each lifetime by a random fraction up to this, so entries do not expire together (0 = off)")
	fs.Float64Var(&c.EarlyBeta, "early-refresh-beta", 1, "probabilistic early refresh (XFetch) strength; higher refreshes earlier (0 = off)")
	fs.BoolVar(&c.HonorClientCC, "honor-client-cache-control", true, "honour clients' Cache-Control: no-cache (revalidate) and no-store (bypass)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token for the admin purge endpoints (empty = purge disabled)")
	fs.StringVar(&c.DropHeaders, "drop-response-headers", "", "comma-separated upstream response header fields neither stored nor replayed, on top of hop-by-hop fields, Set-Cookie and the proxy's own (empty = replay every other end-to-end field)")
	fs.StringVar(&c.RedactFields, "redact-fields", "", "comma-separated JSON member names removed from user bodies before storing and serving, e.g. registration_password (empty = bodies untouched)")
	fs.StringVar(&c.EncryptionKey, "cache-encryption-key-file", "", "file with a 32-byte key (raw or base64): encrypt cached bodies in Redis with AES-256-GCM (empty = off)")
	fs.StringVar(&c.PreviousKey, "cache-encryption-previous-key-file", "", "file with the previous key, still accepted for reading while keys rotate")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", 3*time.Second, "budget for one upstream call, body included")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", 50*time.Millisecond, "budget for one cache operation before failing open to the upstream")
	fs.IntVar(&c.RedisPoolSize, "redis-pool-size", 0, "Redis connections per node (0 = go-redis default, 10 per CPU)")
	fs.BoolVar(&c.RedisAutoPipe, "redis-autopipeline", true, "batch the cache reads of concurrent requests into shared Redis pipelines, one breaker call per pipeline (see README)")
	fs.BoolVar(&c.FillLease, "fill-lease", true, "share each cold user's upstream call with the other replicas on the same Redis: one replica fills under a lease in Redis, the others wait for its answer (see README)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", 0, "soft limit on the Go heap in bytes (0 = twice the in-process cache bound plus 32 MiB, at least 64 MiB; -1 = none; GOMEMLIMIT, if set, wins)")
	fs.IntVar(&c.GCPercent, "gc-percent", 0, "heap growth between collections, in percent of the live heap (0 = 35 with an in-process cache, else the Go default 100; GOGC, if set, wins)")
	fs.IntVar(&c.MaxProcs, "gomaxprocs", 0, "Go scheduler threads running at once, GOMAXPROCS (0 = the Go runtime's choice: one per CPU, or the container's CPU limit, which it follows; GOMAXPROCS, if set, wins)")
	fs.BoolVar(&c.RawSocketIO, "raw-socket-io", true, "read and write client connections with raw system calls, waiting in the Go poller as usual: a request on an idle proxy no longer wakes the runtime's monitor thread (Linux; false = the standard library's reads and writes)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest upstream body accepted for caching")
	fs.Int64Var(&c.MemoryMaxBytes, "memory-max-bytes", 64<<20, "size bound of the embedded in-process store")
	fs.Int64Var(&c.L1MaxBytes, "l1-max-bytes", 16<<20, "size bound of the in-process tier in front of Redis (the hot set; the Go heap needs about twice this)")
	fs.DurationVar(&c.L1TTL, "l1-ttl", time.Second, "the longest the in-process tier in front of Redis may answer without a confirmed-current invalidation feed, so the longest a replica may miss another's invalidation; entries live until their fresh expiry (0 = no tier)")
	fs.StringVar(&c.IDPattern, "id-pattern", defaultIDPattern, "regular expression a user id must match (anchored); with the default, ids are numbers and used without leading zeros (01 is user 1); with another, ids are used as sent")
	fs.BoolVar(&c.Passthrough, "passthrough", true, "pass requests other than GET|HEAD /api/users/{id} through to the upstream, uncached")
	fs.UintVar(&c.BreakerFailures, "breaker-failures", 5, "consecutive upstream failures that open the circuit breaker")
	fs.DurationVar(&c.BreakerOpenTimeout, "breaker-open-timeout", 10*time.Second, "how long the breaker stays open before letting a trial call through")
	fs.DurationVar(&c.BreakerInterval, "breaker-interval", 60*time.Second, "period after which a closed breaker forgets its failure counts (0 = never)")
	fs.UintVar(&c.BreakerHalfOpen, "breaker-half-open-requests", 1, "trial calls let through while half-open")
	fs.IntVar(&c.BreakerFleetQuorum, "breaker-fleet-quorum", 2, "replicas sharing -redis-url that must find the upstream broken before every replica treats it as broken, with one probe per open period for the fleet (0 = each replica on its own breaker; ignored without -redis-url)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "json, text, or auto (json, but text when stderr is a terminal)")
	fs.BoolVar(&c.Demo, "demo", false, "run with an embedded fake upstream and demo credentials")
	fs.Float64Var(&c.AccessLogSampleRate, "access-log-sample-rate", 0, "fraction of proxy requests written to the access log, 0 (off) to 1 (all); 5xx answers are always logged when on")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve the Go profiler at /debug/pprof/ on the admin listener, behind -admin-token (required unless the admin listener is loopback only)")
	fs.BoolVar(&c.Version, "version", false, "print version and build information, then exit")
	for _, name := range secretFlags {
		fs.String(name+"-file", "", "read -"+name+" from this file (trailing newline trimmed)")
	}
	return fs
}

// helpHeader is what -h prints above the flags.
func helpHeader() string {
	var secrets, files []string
	for _, name := range secretFlags {
		secrets = append(secrets, "-"+name)
		files = append(files, "-"+name+"-file")
	}
	last := len(secrets) - 1
	return "Usage: userproxy [flags]\n\n" +
		"Every flag has an environment twin USERPROXY_<FLAG_IN_UPPER_SNAKE> (the flag wins);\n" +
		strings.Join(secrets[:last], ", ") + " and " + secrets[last] + " can also be read from files\n" +
		"(" + strings.Join(files, ", ") + "; " + envName(secretFlags[0]+"-file") + ", ...).\n" +
		"Durations need a unit: 500ms, 60s, 1m30s.\n\n"
}

// envName is a flag's environment twin: -cache-ttl → USERPROXY_CACHE_TTL.
func envName(flagName string) string {
	return "USERPROXY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads flags from args, then environment twins for the flags
// not given, then secret files. It does not validate.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (Config, *flag.FlagSet, error) {
	var c Config
	fs := newFlagSet(&c)
	fs.SetOutput(nopWriter{}) // errors are reported by the caller, in one line
	defer explainDurations(fs)()
	if err := fs.Parse(args); err != nil {
		return c, fs, err
	}
	if fs.NArg() > 0 {
		return c, fs, fmt.Errorf("unexpected argument %q: userproxy takes flags only", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		if v, ok := lookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value for %s: %v", envName(f.Name), e)
			}
		}
	})
	if err != nil {
		return c, fs, err
	}
	for _, name := range secretFlags {
		if err := readSecretFile(fs, name); err != nil {
			return c, fs, err
		}
	}
	return c, fs, nil
}

// explainDurations makes the duration flags of fs, until the returned
// function is called, refuse a bad value with an error that says what is
// wrong: the flag package's own says "parse error", which left
// "-cache-ttl 60" a riddle. The flag package's values are put back
// afterwards because -h names a flag's type only for those.
func explainDurations(fs *flag.FlagSet) (restore func()) {
	var wrapped []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				f.Value = durationHint{f.Value}
				wrapped = append(wrapped, f)
			}
		}
	})
	return func() {
		for _, f := range wrapped {
			f.Value = f.Value.(durationHint).Value
		}
	}
}

// durationHint is a duration flag's value with a helpful error.
type durationHint struct{ flag.Value }

func (d durationHint) Set(s string) error {
	if _, err := time.ParseDuration(s); err != nil {
		if _, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			return fmt.Errorf("needs a unit, e.g. %ss", s)
		}
		return errors.New("not a duration: want a number with a unit, e.g. 500ms, 60s or 1m30s")
	}
	return d.Value.Set(s)
}

// readSecretFile loads -<name> from -<name>-file if the latter is set.
func readSecretFile(fs *flag.FlagSet, name string) error {
	path := fs.Lookup(name + "-file").Value.String()
	if path == "" {
		return nil
	}
	if fs.Lookup(name).Value.String() != "" {
		return fmt.Errorf("-%s and -%s-file are both set: use one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("-%s-file: %w", name, err)
	}
	return fs.Set(name, strings.TrimRight(string(b), "\r\n"))
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
