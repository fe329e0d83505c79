package readthrough

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"

	"github.com/userproxy/userproxy/cache"
)

// neverReplayed are the upstream response fields the proxy does not store
// or replay: hop-by-hop fields (RFC 9110 section 7.6.1), which describe
// one connection; Set-Cookie, which would hand one caller's session to
// every caller of the scope; and the fields the proxy sets itself, from
// its own knowledge of the answer (Content-Type is stored apart, and
// Content-Encoding cannot apply: the body is validated as plain JSON).
var neverReplayed = map[string]bool{
	"Connection":             true,
	"Keep-Alive":             true,
	"Proxy-Authenticate":     true,
	"Proxy-Authorization":    true,
	"Proxy-Connection":       true,
	"Te":                     true,
	"Trailer":                true,
	"Transfer-Encoding":      true,
	"Upgrade":                true,
	"Set-Cookie":             true,
	"Set-Cookie2":            true,
	"Age":                    true,
	"Cache-Status":           true,
	"Content-Encoding":       true,
	"Content-Length":         true,
	"Content-Type":           true,
	"Date":                   true,
	"X-Request-Id":           true,
	"X-Content-Type-Options": true,
}

// replayable returns the fields of h to store and replay with an answer:
// the upstream's end-to-end fields, less those never replayed, those named
// in h's Connection field, and the operator's DropHeaders, in a stable
// order. A 200 always carries a validator: the upstream's ETag, or else a
// strong one derived from the body.
func (e *Engine) replayable(h http.Header, status int, body []byte) cache.Header {
	var perConn map[string]bool // fields the Connection field names are hop-by-hop too
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if perConn == nil {
					perConn = map[string]bool{}
				}
				perConn[http.CanonicalHeaderKey(name)] = true
			}
		}
	}
	names := make([]string, 0, len(h))
	for name := range h {
		if !neverReplayed[name] && !perConn[name] && !e.drop[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out cache.Header
	fields := 0
	if status == http.StatusOK && len(h["Etag"]) == 0 && !e.drop["Etag"] {
		out = out.Add("Etag", bodyETag(body)) // first, so the limits never drop it
		fields++
	}
	for _, name := range names {
		for _, v := range h[name] {
			next := out.Add(name, v)
			if fields++; fields > cache.MaxHeaderFields || len(next) > cache.MaxHeaderBytes {
				// The store would refuse the entry whole; keep what fits.
				e.log.Warn("upstream answer has more header fields than an entry keeps; the rest are not replayed",
					"max_fields", cache.MaxHeaderFields, "max_bytes", cache.MaxHeaderBytes)
				return out
			}
			out = next
		}
	}
	return out
}

// bodyETag is a strong entity tag for body: the first 128 bits of its
// SHA-256, base64url. The same body gives the same tag on every replica.
func bodyETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
}

// etagMatches reports whether the If-None-Match value inm matches the
// entity tag stored in h, by the weak comparison RFC 9110 section 13.1.2
// prescribes for If-None-Match. It does not allocate.
func etagMatches(inm string, h cache.Header) bool {
	tag, ok := h.Get("Etag")
	if !ok {
		return false
	}
	want := opaqueTag(string(tag))
	if want == "" {
		return false
	}
	for item := range strings.SplitSeq(inm, ",") {
		item = strings.TrimSpace(item)
		if item == "*" || (item != "" && opaqueTag(item) == want) {
			return true
		}
	}
	return false
}

// opaqueTag is an entity tag without its weakness indicator: W/"x" and
// "x" compare equal under weak comparison. "" for a malformed tag.
func opaqueTag(t string) string {
	t = strings.TrimPrefix(t, "W/")
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
		return ""
	}
	return t
}
