package upstream

import "net/http"

// Transport returns the RoundTripper for requests to the upstream other
// than Fetch (the proxy's pass-through): the client's own connection pool
// and timeouts and, in inject mode, the injected credentials in place of
// the caller's. Requests sent through it do not go through the breaker.
func (c *Client) Transport() http.RoundTripper {
	if c.inject == nil {
		return c.http.Transport
	}
	return &injecting{next: c.http.Transport, cred: *c.inject}
}

// injecting sends every request with cred as its Basic credentials.
type injecting struct {
	next http.RoundTripper
	cred Credentials
}

func (t *injecting) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not modify its request
	r.SetBasicAuth(t.cred.Username, t.cred.Password)
	return t.next.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport below.
func (t *injecting) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
