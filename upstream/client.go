// Package upstream is the client for the upstream "Get user" API
// (GET {base}/api/users/{id}): URL building, credentials (passthrough or
// injected), transport and timeouts, body size limits, and the circuit
// breaker around every call. It knows nothing about caching; the proxy
// decides what to do with a Response or an error.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrBodyTooLarge is returned (wrapped) by Fetch when the upstream body is
// longer than Options.MaxBodyBytes. It counts as a breaker failure.
var ErrBodyTooLarge = errors.New("upstream body too large")

// ErrTimeout is returned (wrapped, together with the underlying cause such
// as context.DeadlineExceeded) by Fetch when the call ran out of time: the
// Options.Timeout budget, the caller's own deadline, or the transport's
// response-header timeout. It counts as a breaker failure.
var ErrTimeout = errors.New("upstream timed out")

// ErrEmptyID is returned by Fetch for an empty user id, without contacting
// the upstream or touching the breaker.
var ErrEmptyID = errors.New("empty user id")

// Client fetches users from the upstream through a circuit breaker. It is
// safe for concurrent use. Create it with New.
type Client struct {
	http        *http.Client
	prefix      string       // escaped base URL + "/api/users/"
	inject      *Credentials // nil = passthrough; a copy of Options.Inject
	timeout     time.Duration
	maxBody     int64
	userAgent   string
	observe     func(status int, err error, elapsed time.Duration)
	openTimeout time.Duration
	cb          *gobreaker.CircuitBreaker[*Response]
	openClock   openClock
	fleet       *fleetHint // nil: no fleet hint
}

// New validates opts, fills defaults and returns a Client. It fails on a
// missing or malformed BaseURL (not http/https, no host, with a query,
// fragment or credentials), negative durations or sizes, and injected
// credentials without a username. No connection is made.
func New(opts Options) (*Client, error) {
	prefix, err := usersPrefix(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("creating upstream client: %w", err)
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("creating upstream client: %w", err)
	}
	rt := opts.Transport
	if rt == nil {
		rt = newTransport(opts.Timeout)
	}
	c := &Client{
		http: &http.Client{
			Transport: rt,
			// Redirects are answers, not instructions. Following one would
			// re-send the API user's credentials wherever Location points:
			// net/http keeps Authorization for the same host and its
			// subdomains whatever the scheme, so an https→http redirect
			// would put them on the wire in clear. A 3xx is passed back as
			// a Response and the proxy decides.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		prefix:      prefix,
		timeout:     opts.Timeout,
		maxBody:     opts.MaxBodyBytes,
		userAgent:   opts.UserAgent,
		observe:     opts.Observe,
		openTimeout: opts.Breaker.OpenTimeout,
	}
	if opts.Inject != nil {
		cred := *opts.Inject
		c.inject = &cred
	}
	c.fleet = newFleetHint(opts)
	c.cb = newBreaker(opts.Breaker, &c.openClock, c.fleet, opts.OnStateChange)
	return c, nil
}

// Fetch GETs user id from the upstream, sending the injected credentials if
// configured, else cred (the zero Credentials sends no Authorization), and
// the request id and trace headers stored in ctx by WithForward.
//
// For any complete HTTP answer it returns the Response and a nil error,
// 5xx and 429 included (those still count as breaker failures). Otherwise
// resp is nil and err wraps the cause: ErrBreakerOpen when the breaker
// or the fleet's hint (then with ErrFleetOpen) rejected the call (nothing
// was sent), ErrTimeout, ErrBodyTooLarge,
// context.Canceled when ctx was canceled (not counted by the breaker), or a
// transport error. Errors name the id, never credentials or URLs.
func (c *Client) Fetch(ctx context.Context, id string, cred Credentials) (*Response, error) {
	if id == "" {
		return nil, fmt.Errorf("fetching user: %w", ErrEmptyID)
	}
	// A caller that is already gone must not take a half-open probe slot.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fetching user %s: %w", id, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodGet, c.prefix+url.PathEscape(id), nil)
	if err != nil {
		return nil, fmt.Errorf("fetching user %s: building request: %w", id, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if f := ForwardFrom(ctx); f != nil {
		f.Apply(req.Header) // request id and trace context
	}
	if c.inject != nil {
		cred = *c.inject
	}
	if cred != (Credentials{}) {
		req.SetBasicAuth(cred.Username, cred.Password)
	}

	resp, err := c.execute(ctx, func() (*Response, error) {
		return c.do(ctx, req, id)
	})
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, errFailureStatus):
		return resp, nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests), errors.Is(err, ErrFleetOpen):
		return nil, fmt.Errorf("fetching user %s: %w: %w", id, ErrBreakerOpen, err)
	}
	return nil, err
}

// do sends req and reads the answer; it runs inside the breaker. parent is
// the caller's context (req carries the one with our Timeout), used to tell
// a caller cancellation from a timeout. A 5xx/429 Response comes back with
// errFailureStatus so the breaker counts it.
func (c *Client) do(parent context.Context, req *http.Request, id string) (*Response, error) {
	start := time.Now()
	hresp, err := c.http.Do(req)
	if err != nil {
		err = c.callError(parent, req.Context(), id, err)
		c.observeCall(0, err, start)
		return nil, err
	}
	status := hresp.StatusCode
	if hresp.ContentLength > c.maxBody {
		// Known too large: do not read it, and do not drain it either.
		_ = hresp.Body.Close()
		err = fmt.Errorf("fetching user %s: %w", id, ErrBodyTooLarge)
		c.observeCall(status, err, start)
		return nil, err
	}
	body, err := readBody(hresp.Body, hresp.ContentLength, c.maxBody)
	drainClose(hresp.Body)
	if err != nil {
		if !errors.Is(err, ErrBodyTooLarge) {
			err = c.callError(parent, req.Context(), id, err)
		} else {
			err = fmt.Errorf("fetching user %s: %w", id, err)
		}
		c.observeCall(status, err, start)
		return nil, err
	}
	resp := &Response{Status: status, Header: copyHeaders(hresp.Header), Body: body}
	c.observeCall(status, nil, start)
	if isFailureStatus(status) {
		return resp, errFailureStatus
	}
	return resp, nil
}

// callError wraps a transport or body-read error: the *url.Error layer is
// dropped (its message repeats the URL), caller cancellations are marked
// for exclusion from the breaker, and timeouts get ErrTimeout.
func (c *Client) callError(parent, callCtx context.Context, id string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if callerCanceled(parent) {
		return canceledError{fmt.Errorf("fetching user %s: %w", id, err)}
	}
	var ne net.Error
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("fetching user %s: %w: %w", id, ErrTimeout, err)
	}
	return fmt.Errorf("fetching user %s: %w", id, err)
}

// observeCall reports one sent request to Options.Observe, if set.
func (c *Client) observeCall(status int, err error, start time.Time) {
	if c.observe != nil {
		c.observe(status, err, time.Since(start))
	}
}

// CloseIdleConnections closes the idle pooled connections of the client's
// transport (a no-op for a custom Transport without that method). Call it on
// shutdown; in-flight requests are not affected and the Client stays usable.
func (c *Client) CloseIdleConnections() {
	c.http.CloseIdleConnections()
}
