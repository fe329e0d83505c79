package fakeupstream

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fixed answers of the API routes.
var (
	unauthorizedBody = []byte(`{"error":"unauthorized"}`)
	userNotFoundBody = []byte(`{"error":"user not found"}`)
	notFoundBody     = []byte(`{"error":"not found"}`)
	methodBody       = []byte(`{"error":"method not allowed"}`)
)

const usersPath = "/api/users"

// ServeHTTP routes r; see Handler for the routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, controlPrefix):
		h.serveControl(w, r)
	case path == usersPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		h.writes.Add(1)
		h.serveAPI(w, r, h.serveCreate)
	case strings.HasPrefix(path, usersPath+"/"):
		id := numericID(strings.TrimPrefix(path, usersPath+"/"))
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.countRequest(id)
			h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request, tenant string) {
				h.serveGet(w, r, tenant, id)
			})
		case http.MethodPut:
			h.writes.Add(1)
			h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request, tenant string) {
				h.serveUpdate(w, r, tenant, id)
			})
		case http.MethodDelete:
			h.writes.Add(1)
			h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request, tenant string) {
				h.serveDelete(w, tenant, id)
			})
		default:
			methodNotAllowed(w, "GET, HEAD, PUT, DELETE")
		}
	case strings.Contains(path, hookUsersSegment):
		id := numericID(path[strings.LastIndex(path, hookUsersSegment)+len(hookUsersSegment):])
		if r.Method != http.MethodPut {
			methodNotAllowed(w, http.MethodPut)
			return
		}
		h.writes.Add(1)
		h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request, tenant string) {
			h.serveUpdate(w, r, tenant, id)
		})
	case strings.HasPrefix(path, rolesPath+"/"):
		if r.Method != http.MethodPut {
			methodNotAllowed(w, http.MethodPut)
			return
		}
		h.writes.Add(1)
		h.serveAPI(w, r, func(w http.ResponseWriter, r *http.Request, tenant string) {
			h.serveRole(w, r, tenant, strings.TrimPrefix(path, rolesPath+"/"))
		})
	default:
		writeJSON(w, http.StatusNotFound, notFoundBody)
	}
}

// Other routes of the API.
const (
	hookUsersSegment = "/hook/users/"
	rolesPath        = "/api/roles"
)

// numericID is id as the API reads it: a number, so without leading zeros.
// Other ids are kept as they are (and name no user).
func numericID(id string) string {
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return id
	}
	if t := strings.TrimLeft(id, "0"); t != "" {
		return t
	}
	return "0"
}

func (h *Handler) countRequest(id string) {
	h.countMu.Lock()
	defer h.countMu.Unlock()
	h.requests.Add(1)
	h.perID[id]++
}

// serveAPI authenticates r, waits the configured latency, and calls next
// with the credential's tenant.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request, string)) {
	tenant, ok := h.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="CommPeak API"`)
		writeJSON(w, http.StatusUnauthorized, unauthorizedBody)
		return
	}
	if !h.wait(r.Context(), time.Duration(h.latency.Load())) {
		// The client is gone or the handler closed. Returning would send
		// an empty 200 to a client still there; drop the connection.
		panic(http.ErrAbortHandler)
	}
	next(w, r, tenant)
}

// authenticate returns the tenant of r's Basic credentials.
func (h *Handler) authenticate(r *http.Request) (string, bool) {
	username, password, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	c, ok := h.creds[username]
	if !ok {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(c.Password)) != 1 {
		return "", false
	}
	return c.Tenant, true
}

// wait sleeps d and reports whether it ran to the end (false: ctx done or
// handler closed first).
func (h *Handler) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-h.closed:
		return false
	}
}

func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request, tenant, id string) {
	f := Fault(h.fault.Load())
	if h.serveFault(w, r, f) {
		return
	}
	status, body := http.StatusOK, userNotFoundBody
	if u, ok := h.lookup(tenant, id); ok {
		body = u.body
	} else {
		status = http.StatusNotFound
	}
	if f == FaultSlowBody {
		h.writeSlow(w, r, status, body)
		return
	}
	writeJSON(w, status, body)
}

// writeJSON answers status with body in a single Write, with an explicit
// Content-Length so the response is never chunked.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a write error means the client left: nothing to do
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, methodBody)
}
