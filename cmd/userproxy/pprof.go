package main

import (
	"net/http"
	"strings"
	// The import also registers handlers on http.DefaultServeMux in its
	// init; userproxy never serves that mux, so they are unreachable.
	"net/http/pprof"

	"github.com/userproxy/userproxy/proxy"
)

// withPprof serves the Go profiler under /debug/pprof/ beside admin (-pprof).
// /debug/pprof/cmdline is left out on purpose: it would print the command
// line, and with it a -key-secret or -upstream-password given as a flag.
// The admin server's WriteTimeout (30s) bounds profiles: ask for
// /debug/pprof/profile?seconds=20, not the default 30. With a token, every
// profile asks for it as a bearer token (proxy.BearerAuth), as the purge
// endpoints do: a goroutine dump shows what requests are doing.
func withPprof(admin http.Handler, token string) http.Handler {
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
	profiles := proxy.BearerAuth(token, "userproxy-admin", mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			profiles.ServeHTTP(w, r)
			return
		}
		admin.ServeHTTP(w, r)
	})
}
