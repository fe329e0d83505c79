package main

import (
	"log/slog"
	"net/http"

	"github.com/userproxy/userproxy/proxy"
)

// wrapProxy adds the operator features around the proxy handler: request
// ids and trace context (always), and the sampled access log
// (-access-log-sample-rate). The request id is outermost so the access log
// and the upstream call see it.
func wrapProxy(h http.Handler, cfg Config, log *slog.Logger) http.Handler {
	h = proxy.AccessLog(h, proxy.AccessLogOptions{Logger: log, SampleRate: cfg.AccessLogSampleRate})
	return proxy.WithRequestID(h)
}

// wrapAdmin adds the profiler to the admin handler when -pprof is set.
func wrapAdmin(h http.Handler, cfg Config) http.Handler {
	if cfg.Pprof {
		return withPprof(h)
	}
	return h
}
