package fakeupstream

import (
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"time"
)

// controlPrefix starts the control endpoints' paths; the package doc lists
// them. They are not under /api/ so they cannot shadow a real API route.
const controlPrefix = "/_fake/"

// Stats is the body of GET /_fake/stats.
type Stats struct {
	Requests int64            `json:"requests"` // as Handler.Requests
	Writes   int64            `json:"writes"`   // as Handler.Writes
	Hanging  int64            `json:"hanging"`  // requests held by FaultHang now
	PerID    map[string]int64 `json:"per_id"`   // as Handler.RequestsFor, ids asked at least once
	Fault    string           `json:"fault"`    // Fault.String of the current fault
	Latency  string           `json:"latency"`  // time.Duration.String of the current latency
}

func (h *Handler) serveControl(w http.ResponseWriter, r *http.Request) {
	if !isLoopback(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "control endpoints answer loopback clients only")
		return
	}
	path := r.URL.Path[len(controlPrefix):]
	wantMethod := http.MethodPost
	if path == "stats" {
		wantMethod = http.MethodGet
	}
	switch path {
	case "fault", "latency", "stats", "reset":
	default:
		writeJSON(w, http.StatusNotFound, notFoundBody)
		return
	}
	if r.Method != wantMethod {
		methodNotAllowed(w, wantMethod)
		return
	}
	switch path {
	case "fault":
		f, err := ParseFault(r.URL.Query().Get("mode"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		h.SetFault(f)
	case "latency":
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		h.SetLatency(d)
	case "reset":
		h.ResetCounts()
	}
	body, _ := json.Marshal(h.Stats()) // cannot fail: plain fields
	writeJSON(w, http.StatusOK, body)
}

// Stats returns a snapshot of the counters and switches, as
// GET /_fake/stats serves it. PerID is never nil.
func (h *Handler) Stats() Stats {
	h.countMu.Lock()
	perID := maps.Clone(h.perID) // never nil: h.perID is not
	requests := h.requests.Load()
	h.countMu.Unlock()
	return Stats{
		Requests: requests,
		Writes:   h.writes.Load(),
		Hanging:  h.hanging.Load(),
		PerID:    perID,
		Fault:    Fault(h.fault.Load()).String(),
		Latency:  time.Duration(h.latency.Load()).String(),
	}
}

// isLoopback reports whether the host of addr ("host:port") is a loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
