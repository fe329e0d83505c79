package fakeupstream

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Fault is a failure mode the fake applies to authenticated
// GET /api/users/{id} requests. The zero value, FaultNone, means no fault.
type Fault int

const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultServerError answers 500 with a JSON error body.
	FaultServerError
	// FaultUnavailable answers 503 with "Retry-After: 7" and a JSON error body.
	FaultUnavailable
	// FaultTooManyRequests answers 429 with "Retry-After: 3" and a JSON error body.
	FaultTooManyRequests
	// FaultHang never answers: the handler blocks until the request context
	// is done (client gone, server connections closed) or Handler.Close,
	// then drops the connection (panic(http.ErrAbortHandler)).
	FaultHang
	// FaultMalformed answers 200 with Content-Type application/json and a
	// body that is not JSON (a truncated user array).
	FaultMalformed
	// FaultOversize answers 200 with a valid JSON array of more than
	// OversizeBytes bytes.
	FaultOversize
	// FaultSlowBody sends the normal status, headers and Content-Length at
	// once, then dribbles the body a few bytes at a time, stopping early if
	// the request context is done.
	FaultSlowBody
	// FaultReset hijacks the connection and closes it without answering
	// (with SO_LINGER 0, so the client sees a TCP reset). Note that Go's
	// http.Transport retries an idempotent request once when a reused
	// connection fails this way, so one client call may count twice. Where
	// the writer cannot be hijacked (HTTP/2, httptest.ResponseRecorder) the
	// handler panics with http.ErrAbortHandler instead.
	FaultReset
)

// OversizeBytes is the size FaultOversize bodies exceed: 2 MiB.
const OversizeBytes = 2 << 20

// faultNames are the names ParseFault accepts and String returns, indexed by Fault.
var faultNames = [...]string{
	FaultNone:            "none",
	FaultServerError:     "500",
	FaultUnavailable:     "503",
	FaultTooManyRequests: "429",
	FaultHang:            "hang",
	FaultMalformed:       "malformed",
	FaultOversize:        "oversize",
	FaultSlowBody:        "slow-body",
	FaultReset:           "reset",
}

// String returns the fault's name as ParseFault accepts it ("none", "500",
// "503", "429", "hang", "malformed", "oversize", "slow-body", "reset"), or
// "Fault(N)" for a value outside that set.
func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// ParseFault returns the Fault named s (see Fault.String). The empty string
// is not a name; an unknown name is an error.
func ParseFault(s string) (Fault, error) {
	for i, name := range faultNames {
		if s == name {
			return Fault(i), nil
		}
	}
	return FaultNone, fmt.Errorf("parsing fault %q: unknown mode (want one of %v)", s, faultNames)
}

// Defaults for FaultSlowBody: 8 bytes every 100 ms is about 12 s for a
// typical user body, far past any sane upstream read timeout.
const (
	slowBodyChunk    = 8
	slowBodyInterval = 100 * time.Millisecond
)

// Fixed fault bodies. malformedBody is truncated JSON, the most likely
// real-world shape of "not JSON" (a cut connection behind a buffering LB).
var (
	serverErrorBody = []byte(`{"error":"internal server error"}`)
	unavailableBody = []byte(`{"error":"service unavailable"}`)
	tooManyBody     = []byte(`{"error":"too many requests"}`)
	malformedBody   = []byte(`[{"id":"1","username":"olivia.martin","email":`)
)

// serveFault answers r according to f and reports whether it did; false
// means the request should be answered normally (FaultNone, FaultSlowBody).
func (h *Handler) serveFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch f {
	case FaultServerError:
		writeJSON(w, http.StatusInternalServerError, serverErrorBody)
	case FaultUnavailable:
		w.Header().Set("Retry-After", "7")
		writeJSON(w, http.StatusServiceUnavailable, unavailableBody)
	case FaultTooManyRequests:
		w.Header().Set("Retry-After", "3")
		writeJSON(w, http.StatusTooManyRequests, tooManyBody)
	case FaultHang:
		h.hang(r)
	case FaultMalformed:
		writeJSON(w, http.StatusOK, malformedBody)
	case FaultOversize:
		writeJSON(w, http.StatusOK, h.oversize())
	case FaultReset:
		reset(w)
	default:
		return false
	}
	return true
}

// hang blocks until the request is over or the handler is closed, then
// aborts the handler so that no response is ever sent.
func (h *Handler) hang(r *http.Request) {
	if h.testHookHangEnd != nil {
		defer h.testHookHangEnd() // deferred first so it runs after the decrement
	}
	h.hanging.Add(1)
	defer h.hanging.Add(-1)
	if h.testHookHang != nil {
		h.testHookHang()
	}
	select {
	case <-r.Context().Done():
	case <-h.closed:
	}
	// Returning normally would make net/http send an empty 200; a hang
	// never answers, so drop the connection instead.
	panic(http.ErrAbortHandler)
}

// reset drops the connection without an answer. If the writer cannot be
// hijacked (HTTP/2, a recorder) it falls back to aborting the handler,
// which net/http turns into a reset stream or closed connection.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Linger 0 makes Close send RST instead of FIN: a "connection
		// reset by peer", not a clean EOF. Best effort.
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// writeSlow writes status, headers and Content-Length at once, then body in
// small chunks with a pause between them, until done or the request (or the
// handler) is over.
func (h *Handler) writeSlow(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	interval := h.slowInterval
	if interval <= 0 {
		interval = slowBodyInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for len(body) > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-h.closed:
			panic(http.ErrAbortHandler) // the client is still there: cut it off
		case <-t.C:
		}
		n := min(slowBodyChunk, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		body = body[n:]
	}
}

// buildOversize returns a valid JSON array of user objects just over
// OversizeBytes long. It holds no tenant's real data; repeating one object
// keeps it cheap to build.
func buildOversize() []byte {
	one := newUser("oversize", "1").body
	obj := one[1 : len(one)-1] // strip the one-element array's brackets
	b := make([]byte, 0, OversizeBytes+2*len(obj))
	b = append(b, '[')
	b = append(b, obj...)
	for len(b) <= OversizeBytes {
		b = append(b, ',')
		b = append(b, obj...)
	}
	return append(b, ']')
}
