package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/userproxy/userproxy/proxy/readthrough"
)

// purgeTimeout bounds one purge's cache operations. A purge of everything
// walks the whole keyspace, far longer than the per-request cache budget.
const purgeTimeout = 2 * time.Minute

// Purge returns the handler for the admin purge endpoints, to mount on the
// admin listener:
//
//	DELETE /admin/cache/users/{id}   drop every scope's entry for one user
//	DELETE /admin/cache              drop everything (a second pass follows
//	                                 within the fill timeout: see
//	                                 readthrough.Engine.InvalidateAll)
//
// Both require "Authorization: Bearer <token>". An empty token disables them:
// they answer 403 and say how to enable them.
func (h *Handler) Purge(token string) http.Handler {
	purge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete {
			w.Header().Set("Allow", http.MethodDelete)
			writeJSONError(w, http.StatusMethodNotAllowed, "use DELETE")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), purgeTimeout)
		defer cancel()
		path := strings.TrimSuffix(r.URL.EscapedPath(), "/")
		switch {
		case path == "/admin/cache":
			switch err := h.eng.InvalidateAll(ctx, readthrough.CauseAdminAll); {
			case errors.Is(err, readthrough.ErrNotSupported):
				writeJSONError(w, http.StatusNotImplemented, "this cache store cannot drop everything")
			case err != nil:
				writeJSONError(w, http.StatusServiceUnavailable, "cache purge failed: cache unavailable")
			default:
				writeJSON(w, map[string]string{"purged": "all"})
			}
		case strings.HasPrefix(path, "/admin/cache/users/"):
			id, ok := h.checkID(strings.TrimPrefix(path, "/admin/cache/users/"))
			if !ok {
				refuseID(w)
				return
			}
			if err := h.eng.Invalidate(ctx, id, readthrough.CauseAdmin); err != nil {
				writeJSONError(w, http.StatusServiceUnavailable, "cache purge failed: cache unavailable; it will be retried when the cache answers")
				return
			}
			writeJSON(w, map[string]string{"purged": "user", "id": id})
		default:
			writeJSONError(w, http.StatusNotFound, "not found: DELETE /admin/cache/users/{id} or DELETE /admin/cache")
		}
	})
	if token == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusForbidden, "cache purge is disabled: start userproxy with -admin-token or -admin-token-file to enable it")
		})
	}
	return BearerAuth(token, "userproxy-admin", purge)
}

// BearerAuth wraps next so that it answers only requests that carry
// "Authorization: Bearer <token>"; others get a JSON 401 with a challenge
// for realm. An empty token asks for nothing: next is returned as it is.
// Digests are compared, so neither the token's content nor its length
// leaks through timing.
func BearerAuth(token, realm string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	sum := sha256.Sum256([]byte(token))
	challenge := []string{`Bearer realm="` + realm + `"`}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got := sha256.Sum256([]byte(given)); subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
			w.Header()["Www-Authenticate"] = challenge
			writeJSONError(w, http.StatusUnauthorized, "missing or wrong admin bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}
