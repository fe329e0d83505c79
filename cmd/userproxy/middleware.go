package main

import (
	"net/http"
)

// The proxy listener's request ids, trace context and sampled access log
// are part of proxy.Handler.Front (both of its paths); see run.

// wrapAdmin adds the profiler to the admin handler when -pprof is set.
func wrapAdmin(h http.Handler, cfg Config) http.Handler {
	if cfg.Pprof {
		return withPprof(h)
	}
	return h
}
