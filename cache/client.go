package cache

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientOptions tunes the client built by NewUniversalClient. A zero field
// means the documented default. Settings given in the URL's query (go-redis
// names such as read_timeout or pool_size) win over these.
type ClientOptions struct {
	// Timeout bounds each read from and write to a Redis connection. Zero
	// means 100ms: the cache is an optimisation, and a Redis slower than that
	// is treated as down so the proxy fails open to the upstream.
	Timeout time.Duration

	// PoolSize is the number of connections per Redis node. Zero means
	// go-redis's default (10 per CPU).
	PoolSize int

	// OnTopologyReload, if non-nil, is called each time a Cluster client
	// reloads its slot map, with the reason: ReloadError (a node failed in a
	// way a failover explains; the client then reloads at once rather than
	// at the next periodic reload), ReloadMoved, ReloadPeriodic; and each
	// time a Sentinel client connects to a new master: ReloadSwitch. For a
	// Cluster it is called at most once per 250ms per reason. It runs on
	// the goroutine of the command or dial that triggered it, so it must be
	// quick and safe for concurrent use. Nil: not reported (the reloads
	// happen all the same).
	OnTopologyReload func(reason string)
}

const (
	defaultTimeout = 100 * time.Millisecond
	// defaultDialTimeout is longer than Timeout because a TLS handshake to a
	// managed Redis legitimately takes a few round trips.
	defaultDialTimeout = time.Second

	defaultRedisPort    = "6379"
	defaultSentinelPort = "26379"
)

// NewUniversalClient builds a go-redis client for rawURL, always with
// ContextTimeoutEnabled so that request deadlines apply. The caller owns the
// client and must Close it. Supported URLs:
//
//	redis://[user:pass@]host:port[/db][?opts]       single node
//	rediss://...                                     single node over TLS
//	redis://[user:pass@]host:port?addr=h2:p&addr=h3:p Cluster (seed list via addr)
//	redis-cluster://[user:pass@]h1:p,h2:p[?opts]     Cluster (rediss-cluster: TLS)
//	redis-sentinel://[user:pass@]h1:p,h2:p[/db]?master=name[&opts]
//	                                                 Sentinel (rediss-sentinel: TLS)
//
// opts are go-redis URL options (dial_timeout, read_timeout, pool_size, …).
// A Cluster client reloads its slot map as soon as a node fails in a way a
// failover explains, not only on MOVED or once a minute (see topology.go).
// For Sentinel, the user info holds the credentials of the Redis master and
// replicas; sentinel_username and sentinel_password in the query are those of
// the Sentinels themselves, and master_name is accepted for master. A host
// without a port gets 6379 (26379 for Sentinels).
//
// Errors name what is wrong but never repeat the URL, which may hold a password.
func NewUniversalClient(rawURL string, opts ClientOptions) (redis.UniversalClient, error) {
	cfg, err := parseClientURL(rawURL, opts)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.cluster != nil:
		c := redis.NewClusterClient(cfg.cluster)
		watchCluster(c, opts.OnTopologyReload)
		return c, nil
	case cfg.failover != nil:
		c := redis.NewFailoverClient(cfg.failover)
		watchMaster(c, opts.OnTopologyReload)
		return c, nil
	default:
		return redis.NewClient(cfg.simple), nil
	}
}

// ValidateURL reports whether NewUniversalClient accepts rawURL, with the
// same parser and the same errors, without building a client or dialing.
// Errors never repeat the URL, which may hold a password.
func ValidateURL(rawURL string) error {
	_, err := parseClientURL(rawURL, ClientOptions{})
	return err
}

// RedactURL returns rawURL fit for a log: the password in its user info,
// and the value of every query parameter whose name mentions a password
// (sentinel_password), replaced by "xxxxx". A URL that does not parse is
// reduced to its scheme.
func RedactURL(rawURL string) string {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok || scheme == "" || strings.Trim(strings.ToLower(scheme), "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" {
		return "?://(unparsable)" // what looks like a scheme may be user info
	}
	// url.Parse takes the host list of a cluster or Sentinel URL as one
	// host; it need not understand it, only find the user info and query.
	u, err := url.Parse(rawURL)
	if err != nil || u.Opaque != "" {
		return scheme + "://(unparsable)"
	}
	q := u.Query()
	redacted := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// clientConfig is what a URL parses to: exactly one field is set.
type clientConfig struct {
	simple   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// parseClientURL parses rawURL (see NewUniversalClient) and applies opts.
func parseClientURL(rawURL string, opts ClientOptions) (clientConfig, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return clientConfig{}, errors.New("parsing redis url: missing scheme (want e.g. redis://host:6379)")
	}
	switch scheme {
	case "redis", "rediss":
		u, err := parseURL(rawURL)
		if err != nil {
			return clientConfig{}, err
		}
		if u.Query().Has("addr") {
			return parseCluster(rawURL, opts)
		}
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return clientConfig{}, fmt.Errorf("parsing redis url: %w", err)
		}
		applyDefaults(opts, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.ContextTimeoutEnabled)
		return clientConfig{simple: o}, nil
	case "redis-cluster", "rediss-cluster":
		u, err := splitHosts(rawURL, strings.TrimSuffix(scheme, "-cluster"), defaultRedisPort)
		if err != nil {
			return clientConfig{}, err
		}
		if u.Path != "" && u.Path != "/" {
			return clientConfig{}, errors.New("parsing redis cluster url: a cluster has no database number, remove the path")
		}
		u.Path = ""
		return parseCluster(u.String(), opts)
	case "redis-sentinel", "rediss-sentinel":
		return parseSentinel(rawURL, strings.TrimSuffix(scheme, "-sentinel"), opts)
	default:
		if strings.Trim(strings.ToLower(scheme), "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" {
			// Not a scheme at all (e.g. "user:pass@host://"): do not echo it.
			scheme = "?"
		}
		return clientConfig{}, fmt.Errorf("parsing redis url: unsupported scheme %q (want redis, rediss, redis-cluster or redis-sentinel)", scheme)
	}
}

func parseCluster(rawURL string, opts ClientOptions) (clientConfig, error) {
	o, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		return clientConfig{}, fmt.Errorf("parsing redis cluster url: %w", err)
	}
	applyDefaults(opts, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.ContextTimeoutEnabled)
	return clientConfig{cluster: o}, nil
}

func parseSentinel(rawURL, scheme string, opts ClientOptions) (clientConfig, error) {
	u, err := splitHosts(rawURL, scheme, defaultSentinelPort)
	if err != nil {
		return clientConfig{}, err
	}
	q := u.Query()
	if m := q.Get("master"); m != "" {
		q.Del("master")
		q.Set("master_name", m)
	}
	if q.Get("master_name") == "" {
		return clientConfig{}, errors.New("parsing redis sentinel url: missing master=<name> in the query")
	}
	sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	// go-redis reads the user info as the Sentinels' credentials; ours are
	// the master's, so take them out of the URL and set them below.
	user := u.User
	u.User = nil
	u.RawQuery = q.Encode()

	o, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return clientConfig{}, fmt.Errorf("parsing redis sentinel url: %w", err)
	}
	o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPass
	if user != nil {
		o.Username = user.Username()
		o.Password, _ = user.Password()
	}
	applyDefaults(opts, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.ContextTimeoutEnabled)
	return clientConfig{failover: o}, nil
}

// splitHosts turns scheme-x://[userinfo@]h1[:p1],h2[:p2]/path?query into
// scheme://[userinfo@]h1:p1/path?query&addr=h2:p2, the form go-redis parses.
func splitHosts(rawURL, scheme, defaultPort string) (*url.URL, error) {
	_, rest, _ := strings.Cut(rawURL, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	var hosts []string
	for _, h := range strings.Split(authority, ",") {
		if h == "" {
			return nil, errors.New("parsing redis url: empty host in the host list")
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), defaultPort)
		}
		hosts = append(hosts, h)
	}
	u, err := parseURL(scheme + "://" + userinfo + hosts[0] + tail)
	if err != nil {
		return nil, err
	}
	if len(hosts) > 1 {
		q := u.Query()
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// parseURL is url.Parse with an error that cannot leak the password: url.Parse
// quotes the whole URL, and even its inner errors quote fragments of it.
func parseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err == nil {
		return u, nil
	}
	what := "malformed url"
	var ue *url.Error
	if errors.As(err, &ue) {
		switch msg := ue.Err.Error(); {
		case strings.Contains(msg, "escape"):
			what = "invalid percent-escape (escape special characters in the password)"
		case strings.Contains(msg, "port"):
			what = "invalid port"
		case strings.Contains(msg, "userinfo"):
			what = "invalid user info (escape special characters in the password)"
		case strings.Contains(msg, "host"):
			what = "invalid host"
		}
	}
	return nil, errors.New("parsing redis url: " + what)
}

// applyDefaults fills the connection settings the URL left unset and enables
// context deadlines; it takes pointers because go-redis has one options type
// per client kind.
func applyDefaults(opts ClientOptions, dial, read, write *time.Duration, poolSize *int, ctxTimeout *bool) {
	if *dial == 0 {
		*dial = defaultDialTimeout
	}
	if *read == 0 {
		*read = timeoutOr(opts.Timeout)
	}
	if *write == 0 {
		*write = timeoutOr(opts.Timeout)
	}
	if *poolSize == 0 {
		*poolSize = opts.PoolSize
	}
	*ctxTimeout = true
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultTimeout
	}
	return d
}
