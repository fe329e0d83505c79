package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// newPassthrough builds the reverse proxy for uncached traffic. Requests keep
// their path and query; rt (the upstream client's transport) puts the
// configured credentials in place of the caller's in inject mode.
func (h *Handler) newPassthrough(target *url.URL, rt http.RoundTripper) *httputil.ReverseProxy {
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = h.eng.FillTimeout()
		rt = t
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Exactly the request id and trace context WithRequestID
			// accepted or made (none outside it): a malformed traceparent
			// from the client is not passed on.
			if f := upstream.ForwardFrom(pr.In.Context()); f != nil {
				f.Apply(pr.Out.Header)
			}
		},
		Transport:      rt,
		ModifyResponse: h.invalidateOnWrite,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.log.Warn("pass-through request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeJSONError(w, http.StatusBadGateway, "upstream unreachable")
		},
	}
}

// serveWrite passes PUT|PATCH|DELETE /api/users/{id} to the upstream and, if
// it succeeds, drops every scope's cached copy of that user.
func (h *Handler) serveWrite(w http.ResponseWriter, r *http.Request, rawID string) {
	start := h.now()
	id, ok := h.checkID(rawID)
	if !ok {
		refuseID(w)
		h.observe(metrics.CacheBypass, http.StatusBadRequest, start)
		return
	}
	w.Header()["Cache-Status"] = statusMethod
	h.pass(w, withWriteEffect(r, writeEffect{kind: dropUser, id: id}), start)
}

// serveBypass passes any other request through uncached; a write that
// changes users (writes.go) invalidates what it changed once it succeeds.
func (h *Handler) serveBypass(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	if !safePath(r.URL.EscapedPath()) {
		w.Header()["Cache-Status"] = statusBadPath
		writeJSONError(w, http.StatusBadRequest, "invalid path: encoded slashes, NUL and dot segments are not accepted")
		h.observe(metrics.CacheError, http.StatusBadRequest, start)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		w.Header()["Cache-Status"] = statusBypass
	} else {
		w.Header()["Cache-Status"] = statusMethod
		if eff, ok := h.writeEffectOf(r.Method, r.URL.EscapedPath()); ok {
			r = withWriteEffect(r, eff)
		}
	}
	h.pass(w, r, start)
}

func (h *Handler) pass(w http.ResponseWriter, r *http.Request, start time.Time) {
	if h.passthrough == nil {
		writeJSONError(w, http.StatusNotFound, "not found: only GET /api/users/{id} is served")
		h.observe(metrics.CacheBypass, http.StatusNotFound, start)
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h.passthrough.ServeHTTP(sw, r)
	h.observe(metrics.CacheBypass, sw.status, start)
}

// safePath reports whether an escaped path means the same to every server
// that decodes or normalises it: no segment decodes to contain a slash,
// backslash or NUL, none is a dot segment (also with a ;parameter, as some
// servers read "..;x" as ".."), and none but the first is empty (servers
// that merge slashes read /api//users/1 as /api/users/1). Otherwise such a
// path would reach the upstream's user route around the cache and its
// checks.
func safePath(escaped string) bool {
	for i, seg := range strings.Split(escaped, "/") {
		dec, err := url.PathUnescape(seg)
		base, _, _ := strings.Cut(dec, ";")
		switch {
		case err != nil, base == ".", base == "..", strings.ContainsAny(dec, "/\\\x00"):
			return false
		case dec == "" && i > 0 && i < strings.Count(escaped, "/"):
			return false // an empty segment inside the path (a trailing slash is fine)
		}
	}
	return true
}

// statusWriter records the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer (flushes
// from ReverseProxy).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
