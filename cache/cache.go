// Package cache stores cached upstream answers for the proxy.
//
// Two stores share one contract: Redis, shared by every replica (single node,
// Sentinel or Cluster through go-redis's UniversalClient), and Memory, a
// bounded in-process store for a single replica. Both key entries by user id
// and credential scope and invalidate by generation: every user has a
// generation counter, entries remember the generation they were written
// under, and Invalidate bumps the counter, which drops every scope of that
// user at once. A Set carries the generation its caller read, so a fill that
// raced an invalidation is refused (ErrGenerationChanged) instead of bringing
// back data that a write has just made stale.
//
// This package knows nothing about HTTP; an Entry's status and content type are
// plain values that the proxy interprets.
package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key identifies one cached response: a user id and a credential scope.
//
// Scope is an opaque string (the proxy uses a hex HMAC of the credentials) and
// must never be raw credentials: stores write it into Redis key names. The
// empty scope is allowed. See ValidateKey for the few forbidden values.
type Key struct {
	ID, Scope string
}

// Entry is one cached upstream answer.
type Entry struct {
	Status      int       // HTTP status the upstream gave: 200 or 404 in practice
	ContentType string    // upstream Content-Type ("" allowed)
	Body        []byte    // exact upstream body bytes (never re-encoded)
	Stored      time.Time // when the upstream answered
	Expires     time.Time // end of the fresh lifetime (may be earlier than the store TTL; the proxy decides)
	// Fetch is how long the upstream call that produced the entry took;
	// the proxy uses it to refresh expensive entries early. Zero if unknown.
	Fetch time.Duration
	// Header holds the upstream's end-to-end header fields replayed with
	// the entry; nil: none. Each store shares or copies it exactly as it
	// does Body, and refuses (Set fails) a Header past its limits.
	Header Header
}

// ErrGenerationChanged is returned by Set when the user was invalidated after
// the caller read the generation it passed: storing the entry could bring back
// data that a write has made stale, so nothing was stored. It is not a failure
// of the store; the caller should serve what it fetched and not retry the Set.
var ErrGenerationChanged = errors.New("cache: user invalidated since generation was read")

// ErrCorrupt is returned (wrapped) by DecodeEntry for bytes that are not a
// valid encoded entry: truncated, garbage or of an unknown format version.
// The stores treat such an entry as a miss, never as an error.
var ErrCorrupt = errors.New("cache: corrupt entry")

// ErrInvalidKey is returned (wrapped) by every store method given a key that
// cannot be stored safely; see ValidateKey.
var ErrInvalidKey = errors.New("cache: invalid key")

// genSuffix names the generation key in Redis; a scope may not equal it.
const genSuffix = "gen"

// ValidateKey reports whether the user id and scope can be used as a cache key:
// the id must be non-empty and free of '{' and '}' (Redis key names wrap it in
// a Cluster hash tag, and a brace would end or split the tag), and the scope
// must not be "gen" (the name of the user's generation key) nor hold a colon
// (see FillLeases). Ids the proxy
// accepts (digits) and scopes it computes (hex) always pass.
func ValidateKey(id, scope string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty user id", ErrInvalidKey)
	case strings.ContainsAny(id, "{}"):
		return fmt.Errorf("%w: user id contains a brace", ErrInvalidKey)
	case scope == genSuffix:
		return fmt.Errorf("%w: reserved scope", ErrInvalidKey)
	case strings.ContainsRune(scope, ':'):
		// The lease keys (FillLeases) are "<id>:lease:<scope>": a scope
		// with a colon could name another scope's lease.
		return fmt.Errorf("%w: scope contains a colon", ErrInvalidKey)
	}
	return nil
}
