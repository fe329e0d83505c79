package readthrough

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"

	"github.com/userproxy/userproxy/upstream"
)

// maxAuthorizationBytes bounds the Authorization header we are willing to
// decode. Real Basic credentials are well under 1 KiB; anything larger is
// rejected before any base64 work is done on it.
const maxAuthorizationBytes = 1024

// Credential errors: why a request's credentials were refused. Their text
// is sent to clients, so it never includes any part of the header; every
// error parseBasic returns is one of these values, never a wrapped one.
var (
	ErrNoCredentials     = errors.New("missing credentials: send HTTP Basic credentials in the Authorization header")
	ErrNotBasic          = errors.New("malformed credentials: Authorization scheme must be Basic")
	ErrCredentialsTooBig = errors.New("malformed credentials: Authorization header too large")
	ErrNotBase64         = errors.New("malformed credentials: Basic credentials are not valid base64")
	ErrNoColon           = errors.New("malformed credentials: Basic credentials must be username:password")
	ErrEmptyUsername     = errors.New("malformed credentials: empty username")
	ErrManyCredentials   = errors.New("malformed credentials: more than one Authorization header")
)

// credentials returns the credentials for the upstream call and the scope
// they define. In inject mode the caller sends none and every caller shares
// the injected credentials' scope.
func (e *Engine) credentials(r *Request) (upstream.Credentials, string, error) {
	if e.inject != nil {
		return *e.inject, e.injectScope, nil
	}
	if r.Authorizations > 1 {
		// Which one would the upstream use? Refuse rather than guess:
		// the scope must describe exactly the credentials sent on.
		return upstream.Credentials{}, "", ErrManyCredentials
	}
	if r.Authorizations == 0 {
		return upstream.Credentials{}, "", ErrNoCredentials
	}
	if s, ok := e.scopeCache.get(r.Authorization); ok {
		return s.cred, s.scope, nil
	}
	cred, err := parseBasic(r.Authorization)
	if err != nil {
		return upstream.Credentials{}, "", err
	}
	s := &scoped{cred: cred, scope: e.scopes.scope(cred)}
	e.scopeCache.put(r.Authorization, s)
	return s.cred, s.scope, nil
}

// parseBasic extracts HTTP Basic credentials from an Authorization header
// value. Unlike http.Request.BasicAuth it says what is wrong, so a client gets
// a useful 401.
func parseBasic(h string) (upstream.Credentials, error) {
	if h == "" {
		return upstream.Credentials{}, ErrNoCredentials
	}
	if len(h) > maxAuthorizationBytes {
		return upstream.Credentials{}, ErrCredentialsTooBig
	}
	const prefix = "basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return upstream.Credentials{}, ErrNotBasic
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return upstream.Credentials{}, ErrNotBase64
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return upstream.Credentials{}, ErrNoColon
	}
	if user == "" {
		return upstream.Credentials{}, ErrEmptyUsername
	}
	return upstream.Credentials{Username: user, Password: pass}, nil
}

// scoper derives credential scopes: a keyed hash of the credentials, so the
// cache can tell callers apart without ever holding what they sent.
type scoper struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA256 keyed with the secret)
}

func newScoper(secret []byte) *scoper {
	key := append([]byte(nil), secret...)
	return &scoper{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// scope returns HMAC-SHA256(secret, username NUL password), truncated to 128
// bits and hex encoded. 128 bits keeps keys short while leaving collisions
// out of reach; the NUL separator keeps ("ab","c") apart from ("a","bc")
// (a username cannot contain a colon or NUL in Basic credentials).
func (s *scoper) scope(c upstream.Credentials) string {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(c.Username))
	h.Write([]byte{0})
	h.Write([]byte(c.Password))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	s.pool.Put(h)
	return hex.EncodeToString(sum[:16])
}

// maxScopeCache bounds the remembered Authorization headers. A sidecar sees
// a handful of API users; past this many the cache is simply emptied.
const maxScopeCache = 1024

// scopeCache remembers, per Authorization header value, the credentials it
// carries and their scope, so the hit path parses and hashes each caller's
// header once rather than on every request. It only ever holds headers that
// parsed; it lives in process memory, where the headers are anyway.
type scopeCache struct {
	mu sync.RWMutex       // protects m
	m  map[string]*scoped // by Authorization header value
}

type scoped struct {
	cred  upstream.Credentials
	scope string
}

func (c *scopeCache) get(auth string) (*scoped, bool) {
	c.mu.RLock()
	s, ok := c.m[auth]
	c.mu.RUnlock()
	return s, ok
}

func (c *scopeCache) put(auth string, s *scoped) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxScopeCache {
		c.m = make(map[string]*scoped)
	}
	c.m[strings.Clone(auth)] = s // auth may alias a request buffer (Request)
	c.mu.Unlock()
}
