package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/upstream"
)

// Config is everything userproxy can be told. Flags fill it; each flag has an
// environment twin USERPROXY_<FLAG_IN_UPPER_SNAKE>, and a flag given on the
// command line wins over its twin.
type Config struct {
	Listen      string
	AdminListen string
	UpstreamURL string
	RedisURL    string
	KeySecret   string

	AuthMode         string
	UpstreamUsername string
	UpstreamPassword string

	CacheTTL        time.Duration
	NegativeTTL     time.Duration
	StaleTTL        time.Duration
	SWR             time.Duration
	TTLJitter       float64
	EarlyBeta       float64
	HonorClientCC   bool
	AdminToken      string
	RedactFields    string
	DropHeaders     string
	EncryptionKey   string // path
	PreviousKey     string // path
	UpstreamTimeout time.Duration
	RedisTimeout    time.Duration
	RedisPoolSize   int
	RedisAutoPipe   bool
	FillLease       bool
	MemoryLimit     int64
	GCPercent       int
	MaxProcs        int
	RawSocketIO     bool
	MaxBodyBytes    int64
	MemoryMaxBytes  int64
	L1MaxBytes      int64
	L1TTL           time.Duration
	IDPattern       string
	Passthrough     bool

	BreakerFailures    uint
	BreakerOpenTimeout time.Duration
	BreakerInterval    time.Duration
	BreakerHalfOpen    uint
	BreakerFleetQuorum int

	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string
	Demo            bool

	// Operator features (see middleware.go, pprof.go, version.go).
	AccessLogSampleRate float64
	Pprof               bool
	Version             bool
}

// defaultIDPattern is the user id rule when -id-pattern is not given.
const defaultIDPattern = `^[0-9]{1,20}$`

// inProcessBytes is the bound of the in-process cache in use: the embedded
// store without Redis, the tier with it, or 0.
func (c *Config) inProcessBytes() int64 {
	switch {
	case c.RedisURL == "":
		return c.MemoryMaxBytes
	case c.L1TTL > 0:
		return c.L1MaxBytes
	}
	return 0
}

// Validate checks c and names the first flag that is wrong and how.
func (c *Config) Validate() error {
	if err := checkAddr("listen", c.Listen); err != nil {
		return err
	}
	if err := checkAddr("admin-listen", c.AdminListen); err != nil {
		return err
	}
	if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") { // :0 picks a free port each time
		return errors.New("-admin-listen: must differ from -listen")
	}
	switch {
	case c.Demo && c.UpstreamURL != "":
		return errors.New("-demo: runs its own fake upstream; do not combine it with -upstream-url")
	case !c.Demo && c.UpstreamURL == "":
		return errors.New("-upstream-url: required (or run with -demo)")
	case c.UpstreamURL != "":
		if err := checkUpstreamURL(c.UpstreamURL); err != nil {
			return err
		}
	}
	if c.RedisURL != "" {
		// The parser the client uses, so a URL it would refuse at start
		// is refused here, as invalid configuration.
		if err := cache.ValidateURL(c.RedisURL); err != nil {
			return fmt.Errorf("-redis-url: %w", err)
		}
	}
	if c.RedisURL != "" && c.KeySecret == "" {
		return errors.New("-key-secret: required with -redis-url, so that replicas sharing the cache agree on scopes")
	}
	if c.KeySecret != "" && len(c.KeySecret) < 16 {
		return fmt.Errorf("-key-secret: must be at least 16 bytes, got %d", len(c.KeySecret))
	}
	switch c.AuthMode {
	case "passthrough":
		if c.UpstreamUsername != "" || c.UpstreamPassword != "" {
			return errors.New("-upstream-username/-upstream-password: only used with -auth-mode=inject")
		}
	case "inject":
		if c.UpstreamUsername == "" || c.UpstreamPassword == "" {
			return errors.New("-auth-mode: inject needs -upstream-username and -upstream-password")
		}
		if strings.Contains(c.UpstreamUsername, ":") {
			return errors.New("-upstream-username: must not contain ':' (HTTP Basic)")
		}
	default:
		return fmt.Errorf("-auth-mode: must be passthrough or inject, got %q", c.AuthMode)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"cache-ttl", c.CacheTTL}, {"negative-ttl", c.NegativeTTL}, {"upstream-timeout", c.UpstreamTimeout},
		{"redis-timeout", c.RedisTimeout}, {"breaker-open-timeout", c.BreakerOpenTimeout},
		{"shutdown-timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("-%s: must be positive, got %s", d.name, d.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"stale-while-revalidate", c.SWR}, {"stale-ttl", c.StaleTTL}} {
		if d.v < 0 {
			return fmt.Errorf("-%s: must not be negative, got %s", d.name, d.v)
		}
	}
	if c.TTLJitter < 0 || c.TTLJitter >= 1 {
		return fmt.Errorf("-ttl-jitter: must be in [0, 1), got %g", c.TTLJitter)
	}
	if c.EarlyBeta < 0 || c.EarlyBeta > 100 {
		return fmt.Errorf("-early-refresh-beta: must be in [0, 100], got %g", c.EarlyBeta)
	}
	if c.EncryptionKey != "" && c.RedisURL == "" {
		return errors.New("-cache-encryption-key-file: only used with -redis-url (the embedded store never leaves the process)")
	}
	if c.PreviousKey != "" && c.EncryptionKey == "" {
		return errors.New("-cache-encryption-previous-key-file: needs -cache-encryption-key-file")
	}
	for _, f := range c.redactFields() {
		if f == "" {
			return fmt.Errorf("-redact-fields: empty name in %q", c.RedactFields)
		}
	}
	for _, f := range c.dropResponseHeaders() {
		if !validFieldName(f) {
			return fmt.Errorf("-drop-response-headers: %q is not a header field name", f)
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return fmt.Errorf("-admin-token: must be at least 16 bytes, got %d", len(c.AdminToken))
	}
	if c.Pprof && c.AdminToken == "" && !c.adminOnLoopback() {
		return fmt.Errorf("-pprof: profiles and goroutine dumps are for operators: set -admin-token, or listen on loopback only (-admin-listen %s)", c.AdminListen)
	}
	if c.BreakerInterval < 0 {
		return fmt.Errorf("-breaker-interval: must not be negative, got %s", c.BreakerInterval)
	}
	if c.BreakerFailures < 1 {
		return errors.New("-breaker-failures: must be at least 1")
	}
	if c.BreakerHalfOpen < 1 {
		return errors.New("-breaker-half-open-requests: must be at least 1")
	}
	if c.BreakerFleetQuorum < 0 {
		return fmt.Errorf("-breaker-fleet-quorum: must be 0 (off) or a number of replicas, got %d", c.BreakerFleetQuorum)
	}
	if c.MaxBodyBytes <= 0 || c.MaxBodyBytes > 64<<20 {
		return fmt.Errorf("-max-body-bytes: must be between 1 and %d, got %d", 64<<20, c.MaxBodyBytes)
	}
	if c.MemoryLimit < -1 {
		return fmt.Errorf("-memory-limit: must be -1 (none), 0 (automatic) or a byte count, got %d", c.MemoryLimit)
	}
	if c.GCPercent < 0 {
		return fmt.Errorf("-gc-percent: must be 0 (automatic) or a positive percentage, got %d", c.GCPercent)
	}
	if c.MaxProcs < 0 {
		return fmt.Errorf("-gomaxprocs: must be 0 (the runtime's choice) or a positive count, got %d", c.MaxProcs)
	}
	if c.MemoryMaxBytes <= 0 {
		return fmt.Errorf("-memory-max-bytes: must be positive, got %d", c.MemoryMaxBytes)
	}
	if c.L1MaxBytes <= 0 {
		return fmt.Errorf("-l1-max-bytes: must be positive, got %d", c.L1MaxBytes)
	}
	if c.L1TTL < 0 || c.L1TTL > time.Minute {
		return fmt.Errorf("-l1-ttl: must be between 0 and 1m (it bounds how stale a replica may be), got %s", c.L1TTL)
	}
	if c.RedisPoolSize < 0 {
		return fmt.Errorf("-redis-pool-size: must not be negative, got %d", c.RedisPoolSize)
	}
	if _, err := compileIDPattern(c.IDPattern); err != nil {
		return fmt.Errorf("-id-pattern: %v", err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("-log-level: must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" && c.LogFormat != "auto" {
		return fmt.Errorf("-log-format: must be json, text or auto, got %q", c.LogFormat)
	}
	if !(c.AccessLogSampleRate >= 0 && c.AccessLogSampleRate <= 1) { // also refuses NaN
		return fmt.Errorf("-access-log-sample-rate: must be between 0 and 1, got %v", c.AccessLogSampleRate)
	}
	return nil
}

// adminOnLoopback reports whether the admin listener answers loopback
// clients only: a loopback host, or (in demo mode, which binds loopback) no
// host.
func (c *Config) adminOnLoopback() bool {
	host, _, err := net.SplitHostPort(c.AdminListen)
	if err != nil {
		return false
	}
	if host == "" {
		return c.Demo
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkAddr(name, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("-%s: want host:port or :port, got %q", name, addr)
	}
	return nil
}

// checkUpstreamURL accepts a tenant base URL only. Credentials in the URL are
// refused: they would end up in logs and errors.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("-upstream-url: not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("-upstream-url: scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		return errors.New("-upstream-url: missing host")
	case u.User != nil:
		return errors.New("-upstream-url: must not contain credentials; use -auth-mode=inject with -upstream-username/-upstream-password")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return errors.New("-upstream-url: must be a base URL without path, query or fragment, e.g. https://acme.td.commpeak.com")
	}
	return nil
}

// compileIDPattern anchors p so it must match the whole id.
func compileIDPattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, errors.New("must not be empty")
	}
	return regexp.Compile(`^(?:` + p + `)$`)
}

// redactFields splits -redact-fields; nil when empty.
func (c *Config) redactFields() []string { return splitList(c.RedactFields) }

// dropResponseHeaders splits -drop-response-headers; nil when empty.
func (c *Config) dropResponseHeaders() []string { return splitList(c.DropHeaders) }

// splitList splits a comma-separated flag value into trimmed items; nil
// when it is empty.
func splitList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	items := strings.Split(v, ",")
	for i, f := range items {
		items[i] = strings.TrimSpace(f)
	}
	return items
}

// validFieldName reports whether name is an HTTP field name (RFC 9110
// token).
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// sealer loads the cache encryption keys; nil when encryption is off.
func (c *Config) sealer() (*cache.Sealer, error) {
	if c.EncryptionKey == "" {
		return nil, nil
	}
	load := func(flagName, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", flagName, err)
		}
		k, err := cache.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", flagName, err)
		}
		return k, nil
	}
	current, err := load("cache-encryption-key-file", c.EncryptionKey)
	if err != nil {
		return nil, err
	}
	var previous [][]byte
	if c.PreviousKey != "" {
		k, err := load("cache-encryption-previous-key-file", c.PreviousKey)
		if err != nil {
			return nil, err
		}
		previous = append(previous, k)
	}
	return cache.NewSealer(current, previous...)
}

// breakerInterval maps -breaker-interval to the upstream's option: the
// flag's 0 means never, which upstream spells NoInterval (its zero is the
// default).
func breakerInterval(d time.Duration) time.Duration {
	if d == 0 {
		return upstream.NoInterval
	}
	return d
}
