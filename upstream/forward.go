package upstream

import (
	"context"
	"net/http"
)

// forwardHeaders are the request-scoped headers Fetch copies from its
// context onto the upstream request: the request id and the W3C Trace
// Context pair. Nothing else can travel this way, so a caller cannot smuggle
// credentials or hop-by-hop headers into an upstream call.
var forwardHeaders = [...]string{"X-Request-Id", "Traceparent", "Tracestate"}

// forwardKey is the context key of the headers set by WithForwardHeaders.
type forwardKey struct{}

// WithForwardHeaders returns a copy of ctx carrying the X-Request-Id,
// traceparent and tracestate headers found in h (any other header is
// ignored; h is copied, not kept). Fetch sends them on
// the upstream request made with that context, so a request id and trace
// context reach the upstream even though the call runs detached from the
// client that caused it. A nil or empty h returns ctx unchanged.
func WithForwardHeaders(ctx context.Context, h http.Header) context.Context {
	var fwd http.Header
	for _, name := range forwardHeaders {
		if v := h.Get(name); v != "" {
			if fwd == nil {
				fwd = make(http.Header, len(forwardHeaders))
			}
			fwd.Set(name, v)
		}
	}
	if fwd == nil {
		return ctx
	}
	return context.WithValue(ctx, forwardKey{}, fwd)
}

// ForwardHeadersFrom returns the headers WithForwardHeaders stored in ctx,
// or nil if there are none. The caller must not modify the result.
func ForwardHeadersFrom(ctx context.Context) http.Header {
	h, _ := ctx.Value(forwardKey{}).(http.Header)
	return h
}

// setForwardHeaders copies ctx's forward headers onto dst.
func setForwardHeaders(ctx context.Context, dst http.Header) {
	for name, vs := range ForwardHeadersFrom(ctx) {
		dst[name] = append([]string(nil), vs...)
	}
}
