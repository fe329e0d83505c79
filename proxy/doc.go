// Package proxy holds userproxy's HTTP handlers: routing, id validation,
// credential scopes, the read-through flow with per-key coalescing, the
// Cache-Status header, write invalidation and pass-through.
//
// It declares the small interfaces it needs of a cache (Store) and of an
// upstream (Upstream); package cache and package upstream satisfy them, and
// neither imports this package.
package proxy
