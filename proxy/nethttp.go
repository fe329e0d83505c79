package proxy

import (
	"net/http"
	"strings"

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
)

// ServeHTTP routes a request: the net/http front. The id is taken from the
// escaped path, so an encoded slash or NUL is seen (and refused) rather
// than decoded into a different path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), usersPrefix); ok {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.serveUser(w, r, rest)
			return
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			h.serveWrite(w, r, rest)
			return
		}
	}
	h.serveBypass(w, r)
}

// serveUser answers GET|HEAD /api/users/{id} through the engine.
func (h *Handler) serveUser(w http.ResponseWriter, r *http.Request, rawID string) {
	start := h.now()
	id, ok := h.checkID(rawID)
	if !ok {
		refuseID(w)
		h.observe(metrics.CacheError, http.StatusBadRequest, start)
		return
	}
	req := readthrough.Request{ID: id, Received: start}
	if auth := r.Header["Authorization"]; len(auth) > 0 { // canonical key: no allocation
		req.Authorization, req.Authorizations = auth[0], len(auth)
	}
	if h.honorCC {
		req.Directives = readthrough.ParseDirectives(r.Header["Cache-Control"], r.Header["Pragma"])
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		req.IfNoneMatch = joinList(inm)
	}
	if f := upstream.ForwardFrom(r.Context()); f != nil { // set by WithRequestID
		req.Forward = *f
	}
	o := h.eng.Get(r.Context(), req)
	h.writeOutcome(w, r.Method == http.MethodHead, &o)
	h.observe(o.Result, o.Status, start)
}

// writeOutcome renders o: the net/http twin of renderOutcome (fasthttp.go).
// Header values come precomputed where a hit would otherwise allocate
// (render.go).
func (h *Handler) writeOutcome(w http.ResponseWriter, head bool, o *readthrough.Outcome) {
	if o.Status == statusClientGone {
		w.WriteHeader(statusClientGone) // for the access log: nobody reads it
		return
	}
	hdr := w.Header()
	hdr["Cache-Status"] = cacheStatus(o)
	if o.Err != "" {
		if o.RetryAfter != "" {
			hdr.Set("Retry-After", o.RetryAfter)
		}
		if o.Challenge {
			hdr["Www-Authenticate"] = basicChallenge
		}
		writeJSONError(w, o.Status, o.Err)
		return
	}
	h.replayed.replay(hdr, o.Header)
	hdr["Age"] = intValue(o.Age)
	if o.NotModified() {
		w.WriteHeader(o.Status)
		return
	}
	switch {
	case o.ContentType != "":
		hdr["Content-Type"] = contentTypeValue(o.ContentType)
	case o.Status == http.StatusOK:
		hdr["Content-Type"] = ctJSON // validated as JSON before storing
	default:
		// Unknown type: say nothing rather than guess, and stop browsers
		// from sniffing one.
		hdr["X-Content-Type-Options"] = nosniff
	}
	hdr["Content-Length"] = intValue(int64(len(o.Body)))
	w.WriteHeader(o.Status)
	if !head {
		w.Write(o.Body)
	}
}
