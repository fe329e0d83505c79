package main

import (
	"net/http"
)

// The proxy listener's request ids, trace context and sampled access log
// are part of proxy.Handler.Front (both of its paths); see run.

// wrapAdmin adds the profiler to the admin handler when -pprof is set,
// behind the admin token when there is one (Validate refuses -pprof on a
// listener others can reach without one).
func wrapAdmin(h http.Handler, cfg Config) http.Handler {
	if cfg.Pprof {
		return withPprof(h, cfg.AdminToken)
	}
	return h
}
