package proxy

import (
	"context"
	"crypto/rand"
	"net/http"

	"github.com/userproxy/userproxy/upstream"
)

// RequestIDHeader carries a request's id: accepted from the client when it
// is well formed, generated otherwise, echoed on the response and sent
// upstream.
const RequestIDHeader = "X-Request-Id"

// Limits on the request-scoped headers taken from clients. Longer or
// malformed values are not forwarded (an id is replaced by a generated one),
// so a client cannot make the proxy send arbitrary data upstream.
const (
	maxRequestIDLen  = 128
	maxTraceparent   = 128  // version 00 is 55 bytes; later versions may append fields
	maxTracestateLen = 1024 // W3C: at least 512 bytes must be propagated
)

// requestIDKey is the context key of the request id.
type requestIDKey struct{}

// WithRequestID wraps next so that every request has an id: the client's
// X-Request-Id if it is 1 to 128 visible ASCII characters, else a fresh
// random one. The id is set on the request (so pass-through traffic forwards
// it), echoed on the response, and available to next through RequestIDFrom.
//
// The id and the W3C Trace Context headers (traceparent, tracestate; dropped
// if malformed or oversized) are stored in the context with
// upstream.WithForwardHeaders, so the upstream call of a cache miss carries
// them too. A miss shared by coalesced requests carries the id of the request
// that started it. A nil next panics.
func WithRequestID(next http.Handler) http.Handler {
	if next == nil {
		panic("proxy: WithRequestID: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !visibleASCII(id, maxRequestIDLen) {
			id = rand.Text() // 26 base32 characters, 128 bits of randomness
		}
		// The request is the caller's; change a copy of its headers.
		r2 := r.Clone(r.Context())
		r2.Header.Set(RequestIDHeader, id)
		if !visibleASCII(r2.Header.Get("Traceparent"), maxTraceparent) {
			// No valid parent: per W3C Trace Context, tracestate goes too.
			r2.Header.Del("Traceparent")
			r2.Header.Del("Tracestate")
		} else if ts := r2.Header.Values("Tracestate"); len(ts) > 0 {
			joined := joinList(ts)
			if !printableASCII(joined, maxTracestateLen) {
				r2.Header.Del("Tracestate")
			} else {
				r2.Header.Set("Tracestate", joined)
			}
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := context.WithValue(r2.Context(), requestIDKey{}, id)
		ctx = upstream.WithForwardHeaders(ctx, r2.Header)
		next.ServeHTTP(w, r2.WithContext(ctx))
	})
}

// RequestIDFrom returns the id WithRequestID gave the request with ctx, or
// "" if the request did not pass through it.
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// visibleASCII reports whether s is 1 to max characters from '!' to '~'.
func visibleASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// printableASCII is visibleASCII with spaces allowed (tracestate lists
// may have optional whitespace around commas).
func printableASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// joinList joins repeated header fields into one comma-separated list, as
// RFC 9110 allows for list-valued fields such as tracestate.
func joinList(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	n := 0
	for _, v := range vs {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return string(b)
}
