package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
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

// WithRequestID wraps next so that every request has an id: the client's
// X-Request-Id if it is 1 to 128 visible ASCII characters, else a fresh
// random one. The id is echoed on the response and available to next through
// RequestIDFrom.
//
// The id and the W3C Trace Context headers (traceparent, tracestate; dropped
// if malformed or oversized) are stored in the context as an
// upstream.Forward, so the upstream call of a cache miss carries them, and
// pass-through requests get exactly them (see newPassthrough). A miss shared
// by coalesced requests carries the id of the request that started it.
//
// The request itself is not copied or modified: on the hit path this costs
// one small allocation for the context value (and a few more for a
// generated id). A nil next panics.
func WithRequestID(next http.Handler) http.Handler {
	if next == nil {
		panic("proxy: WithRequestID: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := received{
			ids:          r.Header[RequestIDHeader],
			traceparents: r.Header["Traceparent"],
			tracestates:  r.Header["Tracestate"],
		}
		fwd := in.forward()
		if fwd.RequestID == "" {
			var gen [requestIDLen]byte
			putRequestID(&gen)
			fwd.RequestID = string(gen[:])
		}
		w.Header()[RequestIDHeader] = []string{fwd.RequestID}
		next.ServeHTTP(w, r.WithContext(upstream.WithForward(r.Context(), &fwd)))
	})
}

// received is what a request carried of the fields that make its request
// id and trace context. Both fronts fill it in; the values may alias a
// request's buffers.
type received struct {
	ids          []string // X-Request-Id values
	traceparents []string
	tracestates  []string
}

// forward returns the request's id and trace context: the client's
// X-Request-Id if it is the only one and 1 to 128 visible ASCII
// characters, else none (the caller then generates one with
// putRequestID); the W3C trace context only if well formed and not
// oversized. The strings alias the received values.
func (in *received) forward() (fwd upstream.Forward) {
	if len(in.ids) == 1 && visibleASCII(in.ids[0], maxRequestIDLen) {
		fwd.RequestID = in.ids[0]
	}
	if len(in.traceparents) == 1 && visibleASCII(in.traceparents[0], maxTraceparent) {
		fwd.Traceparent = in.traceparents[0]
		if len(in.tracestates) > 0 {
			if joined := joinList(in.tracestates); printableASCII(joined, maxTracestateLen) {
				fwd.Tracestate = joined
			}
		}
	}
	return fwd
}

// requestIDLen is the length of a generated request id.
const requestIDLen = 26

// putRequestID writes a fresh id into b without allocating: 26 base32
// characters, 128 bits of randomness (the form of crypto/rand.Text).
func putRequestID(b *[requestIDLen]byte) {
	var raw [16]byte
	rand.Read(raw[:]) // never fails (crypto/rand: "Read ... never returns an error")
	requestIDEncoding.Encode(b[:], raw[:])
}

var requestIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// RequestIDFrom returns the request id WithRequestID gave the request whose
// context ctx is, or "" outside WithRequestID.
func RequestIDFrom(ctx context.Context) string {
	if f := upstream.ForwardFrom(ctx); f != nil {
		return f.RequestID
	}
	return ""
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
