package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/internal/rawio"
	"github.com/userproxy/userproxy/internal/runtimetune"
	"github.com/userproxy/userproxy/upstream"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// runConfig runs the binary's entry point with a configuration that must be
// refused before anything starts.
func runConfig(t *testing.T, args []string, lookup func(string) (string, bool)) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a configuration that passes would stop at once
	code := run(ctx, args, lookup, &stdout, &stderr, nil)
	return code, stderr.String()
}

func TestInvalidConfigExits2WithOneLine(t *testing.T) {
	base := []string{"-upstream-url", "https://acme.td.commpeak.com"}
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("0123456789abcdef0123\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string // the flag the message must name
	}{
		{"no upstream", nil, nil, "-upstream-url"},
		{"bad scheme", []string{"-upstream-url", "ftp://x"}, nil, "-upstream-url"},
		{"credentials in url", []string{"-upstream-url", "https://u:p@x"}, nil, "-upstream-url"},
		{"path in url", []string{"-upstream-url", "https://x/api"}, nil, "-upstream-url"},
		{"demo with upstream", append(base, "-demo"), nil, "-demo"},
		{"zero ttl", append(base, "-cache-ttl", "0s"), nil, "-cache-ttl"},
		{"negative ttl", append(base, "-negative-ttl", "-1s"), nil, "-negative-ttl"},
		{"unparsable ttl", append(base, "-cache-ttl", "soon"), nil, "-cache-ttl"},
		{"zero upstream timeout", append(base, "-upstream-timeout", "0"), nil, "-upstream-timeout"},
		{"zero redis timeout", append(base, "-redis-timeout", "0"), nil, "-redis-timeout"},
		{"redis without secret", append(base, "-redis-url", "redis://127.0.0.1:1"), nil, "-key-secret"},
		{"short secret", append(base, "-key-secret", "short"), nil, "-key-secret"},
		{"secret and file", append(base, "-key-secret", "0123456789abcdef", "-key-secret-file", secretFile), nil, "-key-secret"},
		{"missing secret file", append(base, "-key-secret-file", "/nonexistent/secret"), nil, "-key-secret-file"},
		{"bad auth mode", append(base, "-auth-mode", "digest"), nil, "-auth-mode"},
		{"inject without creds", append(base, "-auth-mode", "inject"), nil, "-auth-mode"},
		{"creds without inject", append(base, "-upstream-username", "u"), nil, "-upstream-username"},
		{"bad id pattern", append(base, "-id-pattern", "(["), nil, "-id-pattern"},
		{"body too big", append(base, "-max-body-bytes", "1000000000"), nil, "-max-body-bytes"},
		{"zero breaker failures", append(base, "-breaker-failures", "0"), nil, "-breaker-failures"},
		{"negative fleet quorum", append(base, "-breaker-fleet-quorum", "-1"), nil, "-breaker-fleet-quorum"},
		{"bad env fleet quorum", base, []string{"USERPROXY_BREAKER_FLEET_QUORUM", "two"}, "USERPROXY_BREAKER_FLEET_QUORUM"},
		{"memory limit below -1", append(base, "-memory-limit", "-2"), nil, "-memory-limit"},
		{"negative gc percent", append(base, "-gc-percent", "-1"), nil, "-gc-percent"},
		{"negative gomaxprocs", append(base, "-gomaxprocs", "-2"), nil, "-gomaxprocs"},
		{"same listeners", append(base, "-listen", ":9090"), nil, "-admin-listen"},
		{"bad listen", append(base, "-listen", "8080"), nil, "-listen"},
		{"bad log level", append(base, "-log-level", "loud"), nil, "-log-level"},
		{"unknown flag", append(base, "-cache-tll", "1s"), nil, "-cache-tll"},
		{"stray argument", append(base, "extra"), nil, "extra"},
		{"bad env twin", base, []string{"USERPROXY_CACHE_TTL", "forever"}, "USERPROXY_CACHE_TTL"},
		{"bad env redis", base, []string{"USERPROXY_REDIS_URL", "redis://127.0.0.1:1"}, "-key-secret"},
		{"encryption without redis", append(base, "-cache-encryption-key-file", secretFile), nil, "-cache-encryption-key-file"},
		{"encryption key of 21 bytes", append(base, "-redis-url", "redis://127.0.0.1:1", "-key-secret-file", secretFile,
			"-cache-encryption-key-file", secretFile), nil, "-cache-encryption-key-file"},
		{"previous key alone", append(base, "-cache-encryption-previous-key-file", secretFile), nil, "-cache-encryption-previous-key-file"},
		{"empty redact field", append(base, "-redact-fields", "registration_password,,email"), nil, "-redact-fields"},
		{"pprof open to the network", append(base, "-pprof", "-admin-listen", ":9091"), nil, "-pprof"},
		{"pprof on all interfaces", append(base, "-pprof", "-admin-listen", "0.0.0.0:9091"), nil, "-pprof"},
		{"bad header name to drop", append(base, "-drop-response-headers", "X-Ok,Bad Name"), nil, "-drop-response-headers"},
		{"empty header name to drop", append(base, "-drop-response-headers", "X-Ok,,X-Too"), nil, "-drop-response-headers"},
		{"short admin token", append(base, "-admin-token", "short"), nil, "-admin-token"},
		{"negative stale ttl", append(base, "-stale-ttl", "-1s"), nil, "-stale-ttl"},
		{"jitter of 1", append(base, "-ttl-jitter", "1"), nil, "-ttl-jitter"},
		{"redis url without scheme", append(base, "-redis-url", "localhost:6379"), nil, "-redis-url"},
		{"http redis url", append(base, "-redis-url", "http://localhost:6379"), nil, "-redis-url"},
		{"redis url with a bad port", append(base, "-redis-url", "redis://:0123456789abcdef@localhost:port"), nil, "-redis-url"},
		{"sentinel url without master", append(base, "-redis-url", "redis-sentinel://localhost:26379"), nil, "-redis-url"},
		{"bad env redis url", base, []string{"USERPROXY_REDIS_URL", "localhost:6379"}, "-redis-url"},
		{"unitless ttl", append(base, "-cache-ttl", "60"), nil, "-cache-ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runConfig(t, tc.args, env(tc.env...))
			if code != 2 {
				t.Errorf("exit status: got %d, want 2 (stderr %q)", code, out)
			}
			if lines := strings.Count(out, "\n"); lines != 1 {
				t.Errorf("stderr: got %d lines %q, want exactly one", lines, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("stderr %q does not name %s", out, tc.want)
			}
			if strings.Contains(out, "0123456789abcdef") {
				t.Errorf("stderr %q echoes a secret", out)
			}
		})
	}
}

func TestEnvTwinsAndFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("file-secret-0123456789\n"), 0o600)
	c, _, err := parseConfig(
		[]string{"-cache-ttl", "30s"},
		env("USERPROXY_CACHE_TTL", "5s", "USERPROXY_NEGATIVE_TTL", "2s",
			"USERPROXY_UPSTREAM_URL", "https://acme.td.commpeak.com",
			"USERPROXY_KEY_SECRET_FILE", secretFile, "USERPROXY_PASSTHROUGH", "false",
			"USERPROXY_BREAKER_FLEET_QUORUM", "0"),
	)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.CacheTTL != 30*time.Second {
		t.Errorf("-cache-ttl: got %s, want the flag's 30s over the env's 5s", c.CacheTTL)
	}
	if c.NegativeTTL != 2*time.Second {
		t.Errorf("-negative-ttl: got %s, want 2s from USERPROXY_NEGATIVE_TTL", c.NegativeTTL)
	}
	if c.KeySecret != "file-secret-0123456789" {
		t.Errorf("-key-secret from file: got %q, want the file's content without its newline", c.KeySecret)
	}
	if c.Passthrough {
		t.Error("-passthrough: got true, want false from USERPROXY_PASSTHROUGH")
	}
	if c.BreakerFleetQuorum != 0 {
		t.Errorf("-breaker-fleet-quorum: got %d, want 0 (off) from USERPROXY_BREAKER_FLEET_QUORUM", c.BreakerFleetQuorum)
	}
}

func TestDefaultsMatchTheContract(t *testing.T) {
	c, _, err := parseConfig(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"listen", c.Listen, ":8080"},
		{"admin-listen", c.AdminListen, ":9090"},
		{"auth-mode", c.AuthMode, "passthrough"},
		{"cache-ttl", c.CacheTTL.String(), "1m0s"},
		{"negative-ttl", c.NegativeTTL.String(), "10s"},
		{"upstream-timeout", c.UpstreamTimeout.String(), "3s"},
		{"redis-timeout", c.RedisTimeout.String(), "50ms"},
		{"redis-url", c.RedisURL, ""},
	} {
		if tc.got != tc.want {
			t.Errorf("-%s default: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if c.MaxBodyBytes != 1<<20 {
		t.Errorf("-max-body-bytes default: got %d, want 1 MiB", c.MaxBodyBytes)
	}
	if c.BreakerFleetQuorum != 2 {
		t.Errorf("-breaker-fleet-quorum default: got %d, want 2", c.BreakerFleetQuorum)
	}
}

// TestBreakerIntervalZeroMeansNever: the flag's 0 ("never") reaches the
// upstream client as NoInterval, not as its zero (the 60s default).
func TestBreakerIntervalZeroMeansNever(t *testing.T) {
	for _, tc := range []struct{ flag, want time.Duration }{
		{0, upstream.NoInterval},
		{time.Minute, time.Minute},
		{5 * time.Second, 5 * time.Second},
	} {
		if got := breakerInterval(tc.flag); got != tc.want {
			t.Errorf("breakerInterval(%v) = %v, want %v", tc.flag, got, tc.want)
		}
	}
	c, _, err := parseConfig([]string{"-breaker-interval", "0"}, env())
	if err != nil {
		t.Fatalf("-breaker-interval 0: %v", err)
	}
	if got := breakerInterval(c.BreakerInterval); got != upstream.NoInterval {
		t.Errorf("-breaker-interval 0 reaches the upstream as %v, want NoInterval", got)
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, env(), &stdout, &stderr, nil); code != 0 {
		t.Fatalf("-h exit status: got %d, want 0", code)
	}
	var c Config
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(stdout.String(), "-"+f.Name) {
			t.Errorf("-h does not document -%s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("-%s has no usage text", f.Name)
		}
	})
	if !strings.Contains(stdout.String(), "USERPROXY_") {
		t.Error("-h does not mention the environment twins")
	}
}

// TestDurationsNeedAUnit: a duration without a unit, the commonest slip,
// gets an error that names the flag and says so, for every duration flag,
// given as a flag or as its environment twin; and -h still names their
// type.
func TestDurationsNeedAUnit(t *testing.T) {
	base := []string{"-upstream-url", "https://acme.td.commpeak.com"}
	var c Config
	var durations []string
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				durations = append(durations, f.Name)
			}
		}
	})
	if len(durations) < 10 {
		t.Fatalf("found %d duration flags (%v), want the 10 or more userproxy has", len(durations), durations)
	}
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"-h"}, env(), &stdout, &stderr, nil)
	for _, name := range durations {
		for _, tc := range []struct {
			via        string
			args, env  []string
			names, say string
		}{
			{"flag", append(base, "-"+name, "60"), nil, "-" + name, "needs a unit, e.g. 60s"},
			{"env", base, []string{envName(name), "2.5"}, envName(name), "needs a unit, e.g. 2.5s"},
			{"flag, not a number", append(base, "-"+name, "soon"), nil, "-" + name, "e.g. 500ms, 60s or 1m30s"},
		} {
			code, out := runConfig(t, tc.args, env(tc.env...))
			if code != 2 || !strings.Contains(out, tc.names) || !strings.Contains(out, tc.say) {
				t.Errorf("%s %s: got exit %d %q, want 2 and a line naming %s that says %q", name, tc.via, code, out, tc.names, tc.say)
			}
		}
		if !strings.Contains(stdout.String(), "-"+name+" duration\n") {
			t.Errorf("-h does not show -%s as a duration", name)
		}
	}
}

// TestHelpHeaderNamesEverySecretFile: the -h header lists every flag that
// may be read from a file.
func TestHelpHeaderNamesEverySecretFile(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"-h"}, env(), &stdout, &stderr, nil)
	header, _, _ := strings.Cut(stdout.String(), "\n  -")
	for _, name := range secretFlags {
		if !strings.Contains(header, "-"+name+"-file") {
			t.Errorf("-h header does not name -%s-file:\n%s", name, header)
		}
	}
}

// TestGCPercentHelpMatchesCode: -gc-percent's help gives the value the
// runtime package actually picks with an in-process cache.
func TestGCPercentHelpMatchesCode(t *testing.T) {
	var c Config
	usage := newFlagSet(&c).Lookup("gc-percent").Usage
	want := fmt.Sprintf("0 = %d with an in-process cache", runtimetune.GCPercent(runtimetune.Options{InProcessBytes: 1}))
	if !strings.Contains(usage, want) {
		t.Errorf("-gc-percent help %q does not say %q", usage, want)
	}
}

// TestReadmeDocumentsEveryFlag keeps the README's flag table from drifting
// away from the binary.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	newFlagSet(&c).VisitAll(func(f *flag.Flag) {
		row := "| `-" + f.Name + "` | `" + envName(f.Name) + "` |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README has no table row starting %s", row)
		}
	})
}

// TestInProcessBytes: the runtime's automatic memory limit and GC percent
// follow the in-process cache bound that is actually in use (their own
// tests are in internal/runtimetune).
func TestInProcessBytes(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		cfg  Config
		want int64
	}{
		{"embedded store", Config{MemoryMaxBytes: 64 * mib, L1MaxBytes: 16 * mib, L1TTL: time.Second}, 64 * mib},
		{"redis with a large tier", Config{RedisURL: "redis://x", MemoryMaxBytes: 64 * mib, L1MaxBytes: 32 * mib, L1TTL: time.Second}, 32 * mib},
		{"redis with the default tier", Config{RedisURL: "redis://x", MemoryMaxBytes: 64 * mib, L1MaxBytes: 16 * mib, L1TTL: time.Second}, 16 * mib},
		{"redis without tier", Config{RedisURL: "redis://x", MemoryMaxBytes: 64 * mib, L1MaxBytes: 16 * mib}, 0},
	} {
		if got := tc.cfg.inProcessBytes(); got != tc.want {
			t.Errorf("%s: inProcessBytes = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestPprofAllowedWhereOnlyOperatorsReach: -pprof without a token is
// accepted on a loopback admin listener (and in demo mode, which binds
// loopback), and anywhere with a token.
func TestPprofAllowedWhereOnlyOperatorsReach(t *testing.T) {
	base := []string{"-upstream-url", "https://acme.td.commpeak.com", "-listen", "127.0.0.1:0", "-pprof"}
	for name, args := range map[string][]string{
		"loopback v4": append(base, "-admin-listen", "127.0.0.1:0"),
		"loopback v6": append(base, "-admin-listen", "[::1]:0"),
		"localhost":   append(base, "-admin-listen", "localhost:0"),
		"with token":  append(base, "-admin-listen", ":0", "-admin-token", "pprof-test-token-0123456789"),
		"demo":        {"-demo", "-listen", ":0", "-admin-listen", ":0", "-pprof"},
	} {
		var cfg Config
		fs := newFlagSet(&cfg)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v, want it accepted", name, err)
		}
	}
}

// TestRawSocketIO: -raw-socket-io decides whether the proxy listener's
// connections are rawio's or the standard library's.
func TestRawSocketIO(t *testing.T) {
	for _, tc := range []struct {
		flag string
		raw  bool
	}{{"true", true}, {"false", false}} {
		c, _, err := parseConfig([]string{"-listen", "127.0.0.1:0", "-raw-socket-io=" + tc.flag}, env())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := listenProxy(c)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				conn.Close()
			}
		}()
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if _, raw := conn.(*rawio.Conn); raw != tc.raw {
			t.Errorf("-raw-socket-io=%s: accepted a %T", tc.flag, conn)
		}
	}
}
