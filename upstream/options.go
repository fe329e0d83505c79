package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults filled in by New for zero Options fields.
const (
	// DefaultTimeout bounds one whole upstream call, body read included. The
	// proxy answers from a cache in front of this, so a miss may wait a
	// little, but a caller should not hang on a sick upstream.
	DefaultTimeout = 3 * time.Second
	// DefaultMaxBodyBytes caps a response body. A user object is a few KiB;
	// 1 MiB leaves room for large desks/roles/groups arrays while keeping a
	// misbehaving upstream from filling memory or the cache.
	DefaultMaxBodyBytes int64 = 1 << 20
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "userproxy"

	// DefaultConsecutiveFailures trips the breaker. Five in a row is rare
	// enough on a healthy upstream and quick enough to shed load from a sick one.
	DefaultConsecutiveFailures uint32 = 5
	// DefaultInterval is the closed-state period after which the failure
	// counters are cleared, so isolated failures minutes apart on a quiet
	// replica never add up to a trip.
	DefaultInterval = 60 * time.Second
	// NoInterval as BreakerOptions.Interval keeps the closed breaker's
	// failure counts until a success resets them, however far apart the
	// failures are.
	NoInterval time.Duration = -1
	// DefaultOpenTimeout is how long the breaker stays open before letting a
	// probe through (half-open).
	DefaultOpenTimeout = 10 * time.Second
	// DefaultHalfOpenRequests is how many probes half-open lets through; that
	// many consecutive successes close the breaker again.
	DefaultHalfOpenRequests uint32 = 1
)

// Credentials are an API user's username and password, sent as HTTP Basic.
// They are never logged and never appear in errors. The zero value sends no
// Authorization header.
type Credentials struct {
	Username string
	Password string
}

// Options configures a Client. A zero field means the documented default,
// filled once in New.
type Options struct {
	// BaseURL is the upstream origin, e.g. https://acme.td.commpeak.com.
	// Required; http or https, with a host, without query, fragment or
	// credentials. An optional path prefix is kept. The client requests
	// BaseURL + "/api/users/" + url.PathEscape(id).
	BaseURL string

	// Inject, if non-nil, is sent on every request instead of the caller's
	// credentials. Nil means passthrough: Fetch sends the credentials it is given.
	Inject *Credentials

	// Timeout is the budget of one whole call, connection, headers and body
	// read included; it is applied with context.WithTimeout on the context
	// passed to Fetch. Zero means DefaultTimeout.
	Timeout time.Duration

	// MaxBodyBytes caps the response body; a larger one is ErrBodyTooLarge.
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64

	// Transport sends the requests. Nil means a clone of
	// http.DefaultTransport (proxy from the environment kept) with
	// ResponseHeaderTimeout = Timeout, MaxIdleConnsPerHost 64,
	// IdleConnTimeout 90s, TLSHandshakeTimeout 5s and ForceAttemptHTTP2; the
	// Client owns it (see Client.CloseIdleConnections).
	Transport http.RoundTripper

	// Breaker configures the circuit breaker; zero fields take defaults.
	Breaker BreakerOptions

	// UserAgent is the User-Agent header. Empty means DefaultUserAgent.
	UserAgent string

	// Observe, if non-nil, is called once per upstream request actually sent
	// (never for breaker rejections), after the body was read, with the HTTP
	// status (0 when no response arrived), the error Fetch returns for it
	// (nil for any complete HTTP answer, 5xx and 429 included; non-nil with a
	// non-zero status when the head arrived but the body failed, e.g.
	// ErrBodyTooLarge) and the elapsed time. Used for metrics; it runs on the
	// caller's goroutine and should be fast.
	Observe func(status int, err error, elapsed time.Duration)

	// Fleet, if non-nil, shares what the breaker finds with the other
	// replicas through a record they all read (see FleetBreaker and
	// fleet.go), so that an outage costs the fleet about one replica's
	// failures and one probe per open period. Run RunFleet to keep this
	// replica's view of it current. Nil: this replica's breaker alone.
	Fleet FleetBreaker

	// FleetQuorum is how many other replicas must report the upstream
	// broken before this one treats it as broken with its own breaker
	// closed. Zero means DefaultFleetQuorum. Unused without Fleet.
	FleetQuorum int

	// OnFleetChange, if non-nil, is called when what the fleet's hint shows
	// changes: reports is how many distinct replicas (this one included)
	// have a live report, as last read; state is BreakerOpen while the hint
	// is in force, BreakerHalfOpen while this replica's probe for the fleet
	// is in flight, else BreakerClosed. It runs under the hint's lock, so
	// calls arrive in order: it must be fast and must not call any Client
	// method. Nil means no callback.
	OnFleetChange func(reports int, state BreakerState)

	// OnStateChange, if non-nil, is called on every breaker transition. It
	// runs while the breaker holds its lock: it must be fast and must not call
	// any Client method (that would deadlock). Nil means no callback.
	OnStateChange func(from, to BreakerState)
}

// BreakerOptions configures the circuit breaker around upstream calls. A zero
// field means the matching Default constant.
type BreakerOptions struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Zero means DefaultConsecutiveFailures.
	ConsecutiveFailures uint32
	// Interval is the closed-state period after which failure counts are
	// cleared. Zero means DefaultInterval; NoInterval means never (the
	// fleet's shared count, which must expire, then lives DefaultInterval).
	Interval time.Duration
	// OpenTimeout is how long the breaker stays open before going half-open.
	// Zero means DefaultOpenTimeout.
	OpenTimeout time.Duration
	// HalfOpenRequests is how many requests are let through half-open; as
	// many consecutive successes close the breaker. Zero means
	// DefaultHalfOpenRequests.
	HalfOpenRequests uint32
}

// withDefaults returns o with zero fields filled and validates the result.
func (o Options) withDefaults() (Options, error) {
	if o.Timeout < 0 {
		return o, fmt.Errorf("timeout %v must not be negative", o.Timeout)
	}
	if o.MaxBodyBytes < 0 {
		return o, fmt.Errorf("max body bytes %d must not be negative", o.MaxBodyBytes)
	}
	if o.Breaker.Interval < 0 && o.Breaker.Interval != NoInterval {
		return o, fmt.Errorf("breaker interval %v must not be negative (NoInterval means never)", o.Breaker.Interval)
	}
	if o.Breaker.OpenTimeout < 0 {
		return o, fmt.Errorf("breaker open timeout %v must not be negative", o.Breaker.OpenTimeout)
	}
	if o.FleetQuorum < 0 {
		return o, fmt.Errorf("fleet quorum %d must not be negative", o.FleetQuorum)
	}
	if o.Inject != nil && o.Inject.Username == "" {
		return o, errors.New("injected credentials need a username")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	b := &o.Breaker
	if b.ConsecutiveFailures == 0 {
		b.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if b.Interval == 0 {
		b.Interval = DefaultInterval
	}
	if b.OpenTimeout == 0 {
		b.OpenTimeout = DefaultOpenTimeout
	}
	if b.HalfOpenRequests == 0 {
		b.HalfOpenRequests = DefaultHalfOpenRequests
	}
	if o.FleetQuorum == 0 {
		o.FleetQuorum = DefaultFleetQuorum
	}
	return o, nil
}

// usersPrefix validates a base URL and returns the prefix user ids are
// appended to (already escaped), e.g. "https://h/api/users/".
// Errors never echo credentials: url.Parse's own error quotes the raw input,
// so only its cause is kept, and valid URLs are shown redacted.
func usersPrefix(base string) (string, error) {
	if base == "" {
		return "", errors.New("base url is required")
	}
	u, err := url.Parse(base)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("parsing base url: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("base url %q: scheme must be http or https", u.Redacted())
	case u.Opaque != "" || u.Host == "":
		return "", fmt.Errorf("base url %q: host is required", u.Redacted())
	case u.User != nil:
		// Credentials in the URL would end up in error messages and logs;
		// Options.Inject is the place for them.
		return "", fmt.Errorf("base url %q: must not contain credentials, use inject credentials", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("base url %q: must not have a query", u.Redacted())
	case u.Fragment != "":
		return "", fmt.Errorf("base url %q: must not have a fragment", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/") + "/api/users/", nil
}
