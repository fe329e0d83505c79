package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/userproxy/userproxy/metrics"
)

// AllInvalidator is a store that can drop every entry at once. The cache
// package's stores implement it.
type AllInvalidator interface {
	InvalidateAll(ctx context.Context) error
}

// purgeTimeout bounds one purge's cache operations. A purge of everything
// walks the whole keyspace, far longer than the per-request cache budget.
const purgeTimeout = 2 * time.Minute

// Purge returns the handler for the admin purge endpoints, to mount on the
// admin listener:
//
//	DELETE /admin/cache/users/{id}   drop every scope's entry for one user
//	DELETE /admin/cache              drop everything
//
// Both require "Authorization: Bearer <token>". An empty token disables them:
// they answer 403 and say how to enable them.
func (h *Handler) Purge(token string) http.Handler {
	sum := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			writeJSONError(w, http.StatusForbidden, "cache purge is disabled: start userproxy with -admin-token or -admin-token-file to enable it")
			return
		}
		// Compare digests, so neither the token's content nor its
		// length leaks through timing.
		given, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got := sha256.Sum256([]byte(given)); subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="userproxy-admin"`)
			writeJSONError(w, http.StatusUnauthorized, "missing or wrong admin bearer token")
			return
		}
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
			h.purgeAll(ctx, w)
		case strings.HasPrefix(path, "/admin/cache/users/"):
			id, ok := h.checkID(w, strings.TrimPrefix(path, "/admin/cache/users/"))
			if !ok {
				return
			}
			if err := h.invalidate(ctx, id, "admin"); err != nil {
				writeJSONError(w, http.StatusServiceUnavailable, "cache purge failed: cache unavailable; it will be retried when the cache answers")
				return
			}
			writeJSON(w, map[string]string{"purged": "user", "id": id})
		default:
			writeJSONError(w, http.StatusNotFound, "not found: DELETE /admin/cache/users/{id} or DELETE /admin/cache")
		}
	})
}

// purgeAll drops everything, twice: the second pass, once every fill that
// was in flight during the first has finished (fills are bounded by
// FillTimeout), catches what those fills stored for users the first pass
// could not fence (see cache.Redis.InvalidateAll).
func (h *Handler) purgeAll(ctx context.Context, w http.ResponseWriter) {
	all, ok := h.store.(AllInvalidator)
	if !ok {
		writeJSONError(w, http.StatusNotImplemented, "this cache store cannot drop everything")
		return
	}
	if err := all.InvalidateAll(ctx); err != nil {
		h.purgeFailed(w, err)
		return
	}
	select {
	case <-time.After(h.fillTO):
	case <-ctx.Done():
		h.purgeFailed(w, ctx.Err())
		return
	}
	if err := all.InvalidateAll(ctx); err != nil {
		h.purgeFailed(w, err)
		return
	}
	h.m.Invalidations.WithLabelValues("admin_all").Inc()
	writeJSON(w, map[string]string{"purged": "all"})
}

func (h *Handler) purgeFailed(w http.ResponseWriter, err error) {
	h.m.CacheErrors.WithLabelValues(metrics.OpInvalidate).Inc()
	h.log.Error("cache purge failed", "err", err)
	writeJSONError(w, http.StatusServiceUnavailable, "cache purge failed: cache unavailable")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
