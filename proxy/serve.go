package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/metrics"
)

// Cache-Status (RFC 9211) values that carry no per-request figures.
const (
	statusInvalidID      = "userproxy; detail=invalid-id"
	statusBadCredentials = "userproxy; detail=bad-credentials"
	statusBypass         = "userproxy; fwd=bypass"
	statusMethod         = "userproxy; fwd=method"
)

// serveHit answers from a fresh cached entry. It is the hot path: header
// values come precomputed (headers.go), so it does not allocate.
func (h *Handler) serveHit(w http.ResponseWriter, r *userRequest, e cache.Entry, start time.Time) {
	hdr := w.Header()
	negative := e.Status == http.StatusNotFound
	hdr["Cache-Status"] = hitStatus(seconds(e.Expires.Sub(start)), negative)
	hdr["Age"] = intValue(seconds(start.Sub(e.Stored)))
	writeEntry(w, r, e)
	if negative {
		h.observe(metrics.CacheNegative, e.Status, start)
	} else {
		h.observe(metrics.CacheHit, e.Status, start)
	}
}

// serveStale answers from an expired entry, on purpose: while it is being
// revalidated, or because the upstream failed. params carries the reason
// (fwd-status and/or detail); ttl is negative, how long ago it expired.
func (h *Handler) serveStale(w http.ResponseWriter, r *userRequest, e cache.Entry, start time.Time, reason, params string) {
	hdr := w.Header()
	hdr.Set("Cache-Status", "userproxy; hit; fwd=stale"+params+"; ttl="+strconv.FormatInt(-seconds(start.Sub(e.Expires)), 10))
	hdr.Set("Age", strconv.FormatInt(seconds(start.Sub(e.Stored)), 10))
	writeEntry(w, r, e)
	h.m.StaleServed.WithLabelValues(reason).Inc()
	h.observe(metrics.CacheStale, e.Status, start)
}

// fwdParams renders the fwd-status and detail parameters, each if set.
func fwdParams(fwdStatus int, detail string) string {
	s := ""
	if fwdStatus != 0 {
		s += "; fwd-status=" + strconv.Itoa(fwdStatus)
	}
	if detail != "" {
		s += "; detail=" + detail
	}
	return s
}

// missStatus builds the Cache-Status of a forwarded request.
func missStatus(fwdStatus int, detail string, stored, collapsed bool) string {
	s := "userproxy; fwd=uri-miss"
	if fwdStatus != 0 {
		s += "; fwd-status=" + strconv.Itoa(fwdStatus)
	}
	if stored {
		s += "; stored"
	}
	if collapsed {
		s += "; collapsed"
	}
	if detail != "" {
		s += "; detail=" + detail
	}
	return s
}

// writeEntry writes a stored or fetched answer, byte-identical to what the
// upstream sent. A HEAD gets the headers only.
func writeEntry(w http.ResponseWriter, r *userRequest, e cache.Entry) {
	hdr := w.Header()
	switch {
	case e.ContentType != "":
		hdr["Content-Type"] = contentTypeValue(e.ContentType)
	case e.Status == http.StatusOK:
		hdr["Content-Type"] = ctJSON // validated as JSON before storing
	default:
		// Unknown type: say nothing rather than guess, and stop browsers
		// from sniffing one.
		hdr.Set("X-Content-Type-Options", "nosniff")
	}
	hdr["Content-Length"] = intValue(int64(len(e.Body)))
	w.WriteHeader(e.Status)
	if !r.head {
		w.Write(e.Body)
	}
}

// seconds is d in whole seconds, never negative (RFC 9111 Age and the ttl
// parameter are non-negative integers).
func seconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// jsonValid reports whether b is one JSON value. The body is only checked,
// never decoded and re-encoded: clients get the upstream's exact bytes.
func jsonValid(b []byte) bool { return json.Valid(b) }
