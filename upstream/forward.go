package upstream

import (
	"context"
	"net/http"
)

// Forward is the request-scoped context Fetch sends with an upstream call:
// the request id and the W3C Trace Context pair. Only these can travel this
// way, so a caller cannot smuggle credentials or hop-by-hop headers into an
// upstream call. Empty fields are not sent.
type Forward struct {
	RequestID   string // X-Request-Id
	Traceparent string
	Tracestate  string
}

// forwardKey is the context key of the *Forward set by WithForward.
type forwardKey struct{}

// WithForward returns a copy of ctx carrying f. Fetch sends f's headers on
// the upstream request made with that context, so a request id and trace
// context reach the upstream even though a fill runs detached from the
// client that caused it. f must not be modified afterwards; nil returns ctx.
func WithForward(ctx context.Context, f *Forward) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, forwardKey{}, f)
}

// ForwardFrom returns the Forward stored in ctx by WithForward, or nil. The
// caller must not modify it.
func ForwardFrom(ctx context.Context) *Forward {
	f, _ := ctx.Value(forwardKey{}).(*Forward)
	return f
}

// Apply sets f's non-empty fields on h and deletes the headers of its empty
// ones, so that h carries exactly f. A nil f deletes all three.
func (f *Forward) Apply(h http.Header) {
	var v Forward
	if f != nil {
		v = *f
	}
	for _, kv := range [...]struct{ name, value string }{
		{"X-Request-Id", v.RequestID}, {"Traceparent", v.Traceparent}, {"Tracestate", v.Tracestate},
	} {
		if kv.value == "" {
			delete(h, kv.name)
		} else {
			h[kv.name] = []string{kv.value}
		}
	}
}
