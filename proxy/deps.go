package proxy

import (
	"context"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/upstream"
)

// Store is what the proxy needs of a cache. A miss is ok == false, not an
// error; gen is the user's generation at read time, handed back to Set so a
// fill that raced an invalidation is refused (cache.ErrGenerationChanged).
type Store interface {
	Get(ctx context.Context, k cache.Key) (e cache.Entry, gen uint64, ok bool, err error)
	Set(ctx context.Context, k cache.Key, e cache.Entry, ttl time.Duration, gen uint64) error
	Invalidate(ctx context.Context, id string) error
}

// Upstream is what the proxy needs of the upstream API client.
type Upstream interface {
	// Fetch returns the upstream's answer for user id, or an error when
	// there was none (transport failure, timeout, oversized body, open
	// breaker: errors.Is(err, upstream.ErrBreakerOpen)).
	Fetch(ctx context.Context, id string, cred upstream.Credentials) (*upstream.Response, error)
	// RetryAfter says how long until an open breaker lets a call through.
	RetryAfter() time.Duration
}

// LocalGetter is a Store that can answer some lookups from process memory,
// without I/O: the proxy asks it first, without setting up a deadline.
type LocalGetter interface {
	GetLocal(k cache.Key) (e cache.Entry, gen uint64, ok bool)
}
