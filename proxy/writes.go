package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/userproxy/userproxy/proxy/readthrough"
)

// Writes that change users, and what each drops once the upstream answers
// 2xx. The bound on staleness after each is in the README (freshness).
//
//	PUT|PATCH|DELETE /api/users/{id}    that user, every scope (DELETE soft-deletes)
//	any write to …/hook/users/{id}      that user (the webhook module's update)
//	POST /api/users                     the created user: its cached 404, found
//	                                    by the id in the answer (Location, or the
//	                                    body's "id")
//	any write to /api/roles[/{id}]      everything: role membership is every
//	                                    member's roles field, and which users
//	                                    a role has is the upstream's to know
//
// For roles the proxy cannot know the members: the request body's shape is
// not documented, and reading the members from the upstream would be a
// second call per write. A roles epoch checked on every hit would need a
// read of a key outside the user's slot (Redis Cluster) or a broadcast with
// a fallback of its own. Dropping everything reuses the purge every replica
// already hears of (the tier's "all" message, the generation fence in
// Redis); role changes are rare operator actions, and the cost is a cold
// cache, which coalescing and the breaker bound.

type effectKind uint8

const (
	dropUser    effectKind = iota + 1 // the user named in the path
	dropCreated                       // the user the answer names
	dropAll                           // every user
)

// writeEffect is what a write does to the cache once it succeeds.
type writeEffect struct {
	kind effectKind
	id   string // dropUser: the id, canonical
}

// writeEffectKey carries a write's effect to invalidateOnWrite.
type writeEffectKey struct{}

func withWriteEffect(r *http.Request, eff writeEffect) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), writeEffectKey{}, eff))
}

const (
	hookUsersSegment = "/hook/users/"
	rolesPath        = "/api/roles"
)

// writeEffectOf classifies a write (any method but GET and HEAD) other than
// one to /api/users/{id}, by its escaped path.
func (h *Handler) writeEffectOf(method, path string) (writeEffect, bool) {
	switch {
	case method == http.MethodPost && strings.TrimSuffix(path, "/") == strings.TrimSuffix(usersPrefix, "/"):
		return writeEffect{kind: dropCreated}, true
	case path == rolesPath || strings.HasPrefix(path, rolesPath+"/"):
		return writeEffect{kind: dropAll}, true
	}
	if i := strings.LastIndex(path, hookUsersSegment); i >= 0 {
		if id, ok := h.checkID(path[i+len(hookUsersSegment):]); ok {
			return writeEffect{kind: dropUser, id: id}, true
		}
	}
	return writeEffect{}, false
}

// writePurgeTimeout bounds the purge a roles write makes before its answer
// is sent: a walk of the whole keyspace, far longer than one cache
// operation.
const writePurgeTimeout = 30 * time.Second

// invalidateOnWrite applies a successful write's effect (ModifyResponse of
// the pass-through), before the answer reaches the client: a read sent
// after the client has its answer finds the cache already without what the
// write changed.
func (h *Handler) invalidateOnWrite(resp *http.Response) error {
	eff, ok := resp.Request.Context().Value(writeEffectKey{}).(writeEffect)
	if !ok || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil
	}
	// The write has happened upstream whether or not this client stays to
	// read the answer, so the invalidation must not be cancelled with it.
	ctx := context.WithoutCancel(resp.Request.Context())
	switch eff.kind {
	case dropUser:
		h.eng.Invalidate(ctx, eff.id, readthrough.CauseWrite)
	case dropCreated:
		id, ok := h.createdID(resp)
		if !ok {
			h.log.Warn("created a user but found no id in the answer; a cached 404 for it lasts until -negative-ttl")
			return nil
		}
		h.eng.Invalidate(ctx, id, readthrough.CauseCreate)
	case dropAll:
		ctx, cancel := context.WithTimeout(ctx, writePurgeTimeout)
		defer cancel()
		h.eng.InvalidateAll(ctx, readthrough.CauseRoles)
	}
	return nil
}

// maxCreatedBody bounds how much of a create's answer is read for the new
// user's id. Past it the body passes on unread.
const maxCreatedBody = 1 << 20

// createdID finds the id of the user a POST /api/users created: in the
// Location field (…/users/{id}), or in the JSON answer, as "id" of the
// object, of the first element of an array, or of either wrapped in a
// one-member object ({"users":[…]}). The body is put back for the client,
// byte for byte.
func (h *Handler) createdID(resp *http.Response) (string, bool) {
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil {
			if i := strings.LastIndex(u.EscapedPath(), "/users/"); i >= 0 {
				if id, ok := h.checkID(u.EscapedPath()[i+len("/users/"):]); ok {
					return id, true
				}
			}
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCreatedBody+1))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
	if err != nil || len(body) > maxCreatedBody {
		return "", false
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // ids past 2^53 keep their digits
	if dec.Decode(&doc) != nil {
		return "", false
	}
	raw, ok := userIDIn(doc, true)
	if !ok {
		return "", false
	}
	return h.checkID(url.PathEscape(raw))
}

// userIDIn finds the "id" member of the user v describes; unwrap allows one
// level of wrapping object.
func userIDIn(v any, unwrap bool) (string, bool) {
	switch v := v.(type) {
	case map[string]any:
		switch id := v["id"].(type) {
		case string:
			return id, id != ""
		case json.Number:
			return id.String(), true
		}
		if unwrap && len(v) == 1 {
			for _, inner := range v {
				return userIDIn(inner, false)
			}
		}
	case []any:
		if len(v) > 0 {
			return userIDIn(v[0], unwrap)
		}
	}
	return "", false
}
