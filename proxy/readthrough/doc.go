// Package readthrough is userproxy's read-through engine: given a user id,
// the caller's credentials and their cache directives, it answers from the
// cache or fetches from the upstream, and says what it did in an Outcome
// value. It never touches a response writer; the HTTP edges (package
// proxy) turn requests into a Request and render the Outcome.
//
// The flow of Get, in order:
//
//   - scope: the credentials become a keyed hash (scope.go), so one
//     caller's data is never served to another;
//   - lookup: the in-process tier, then the store, sharing a store read
//     already in flight for the key (lookup.go);
//   - freshness: a fresh entry is a hit, maybe refreshed early in the
//     background; an expired one may be served stale (freshness.go,
//     refresh.go);
//   - fill: one upstream call per key at a time through the breaker,
//     stored under the user's generation so a write during the fill wins
//     (fill.go);
//   - failure: with no usable answer, a stale copy or an error status,
//     decided in one place (failure.go).
//
// Invalidate and InvalidateAll drop entries after writes and purges, and
// retry when the cache was unreachable (invalidate.go). The coalescing
// structures live in package coalesce.
//
// The engine declares the small interfaces it needs of a cache (Store) and
// an upstream (Upstream); package cache and package upstream satisfy them.
package readthrough
