package testkit

import (
	"net/http"
	"testing"
	"time"
)

// clientTimeout bounds one request of HTTPClient's: a stuck server fails
// the test instead of hanging it.
const clientTimeout = 10 * time.Second

// HTTPClient returns a client for a test's own servers: its transport is a
// clone of http.DefaultTransport, so no other test shares its connections,
// and its idle connections are closed when tb ends, so that goleak finds
// no connection goroutines left behind. Each request is bounded by a
// generous timeout.
func HTTPClient(tb testing.TB) *http.Client {
	tb.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: clientTimeout}
}
