package upstream

import (
	"net"
	"net/http"
	"time"
)

const (
	// maxIdleConnsPerHost replaces net/http's default of 2. The proxy talks
	// to exactly one upstream host, and with only 2 idle slots every burst
	// above two concurrent misses closes its connections after use and dials
	// (and TLS-handshakes) new ones, leaving TIME_WAIT sockets behind. 64
	// covers the misses a sidecar replica has in flight without holding an
	// unbounded number of sockets open.
	maxIdleConnsPerHost = 64
	// idleConnTimeout drops pooled connections that have been quiet a while,
	// before load balancers in front of the upstream silently do.
	idleConnTimeout = 90 * time.Second
	// tlsHandshakeTimeout bounds the handshake separately so a stuck
	// handshake is reported as such; the call budget still applies.
	tlsHandshakeTimeout = 5 * time.Second
)

// newTransport returns a clone of http.DefaultTransport (keeping its proxy
// from the environment and dialer settings) tuned for one upstream host.
// ResponseHeaderTimeout is the call budget, so a server that accepts the
// connection and never answers is cut off even if a caller's context has no
// deadline of its own.
func newTransport(timeout time.Duration) *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		// Someone replaced the process-wide default; build the equivalent.
		t = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   30 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:          100,
			ExpectContinueTimeout: time.Second,
		}
	}
	t.ForceAttemptHTTP2 = true
	t.ResponseHeaderTimeout = timeout
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	if t.MaxIdleConns != 0 && t.MaxIdleConns < maxIdleConnsPerHost {
		t.MaxIdleConns = maxIdleConnsPerHost
	}
	t.IdleConnTimeout = idleConnTimeout
	t.TLSHandshakeTimeout = tlsHandshakeTimeout
	return t
}
