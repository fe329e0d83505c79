package main

import (
	"net/http"
	// The import also registers handlers on http.DefaultServeMux in its
	// init; userproxy never serves that mux, so they are unreachable.
	"net/http/pprof"
)

// withPprof serves the Go profiler under /debug/pprof/ beside admin (-pprof).
// /debug/pprof/cmdline is left out on purpose: it would print the command
// line, and with it a -key-secret or -upstream-password given as a flag.
// The admin server's WriteTimeout (30s) bounds profiles: ask for
// /debug/pprof/profile?seconds=20, not the default 30.
func withPprof(admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/cmdline" {
			http.NotFound(w, r)
			return
		}
		pprof.Index(w, r) // the index page and named profiles: heap, goroutine, allocs, …
	})
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("/", admin)
	return mux
}
