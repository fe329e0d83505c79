// Package coalesce holds the structures the read-through engine uses to
// make concurrent requests for one key share work instead of repeating it:
// a single-flight group, a set of keys with work in progress, epoch
// counters over groups of keys, and shared reads.
//
// Each is small, knows nothing of caches or HTTP, and is tested on its own,
// the way groupcache keeps singleflight apart from the cache it serves.
package coalesce
