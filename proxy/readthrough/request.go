package readthrough

import (
	"strings"
	"time"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/upstream"
)

// Request is one read of a user through the engine. Its strings may alias a
// front's request buffers: they need stay valid only until Get returns, as
// the engine copies what it keeps.
type Request struct {
	// ID is the user id, already validated by the edge.
	ID string
	// Authorization is the value of the request's Authorization field when
	// exactly one was sent, and Authorizations how many were sent. Both are
	// ignored in inject mode.
	Authorization  string
	Authorizations int
	// Directives are the client's cache directives (ParseDirectives).
	Directives Directives
	// IfNoneMatch is the request's If-None-Match value, its fields joined
	// with commas; "" for none.
	IfNoneMatch string
	// Forward is what an upstream call made for this request carries: its
	// request id and trace context. Zero carries none.
	Forward upstream.Forward
	// Received is when the request arrived, by the engine's clock
	// (Engine.Now): freshness is judged at that instant. Zero means when
	// Get is called. An edge that reads the clock anyway (for its metrics)
	// passes its reading, which saves reading it twice on every hit.
	Received time.Time
}

// Directives is what a client's request asks of the cache.
type Directives struct {
	NoCache bool // revalidate with the upstream before using a stored answer
	NoStore bool // do not use the cache at all, in either direction
}

// ParseDirectives reads the Cache-Control field values (and Pragma's, for
// HTTP/1.0 clients, when there is no Cache-Control). max-age=0 asks the
// same as no-cache.
func ParseDirectives(cc, pragma []string) Directives {
	var d Directives
	if len(cc) == 0 {
		for _, p := range pragma {
			if strings.EqualFold(strings.TrimSpace(p), "no-cache") {
				d.NoCache = true
			}
		}
		return d
	}
	for _, line := range cc {
		for part := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache":
				d.NoCache = true
			case "no-store":
				d.NoStore = true
			case "max-age":
				if strings.Trim(strings.TrimSpace(val), `"`) == "0" {
					d.NoCache = true
				}
			}
		}
	}
	return d
}

// Kind is what the engine did for a request, as the Cache-Status header
// (RFC 9211) tells it.
type Kind uint8

const (
	// KindHit: a fresh stored answer ("hit; ttl=N").
	KindHit Kind = iota
	// KindStale: an expired stored answer, served on purpose ("hit;
	// fwd=stale"): while it is revalidated, or because the upstream failed.
	KindStale
	// KindMiss: the request went to the upstream through a fill
	// ("fwd=uri-miss"), whether or not it got an answer.
	KindMiss
	// KindRequest: the client asked for no-store, so the request went to
	// the upstream past the cache ("fwd=request").
	KindRequest
	// KindRefused: refused before any lookup (bad credentials).
	KindRefused
)

// Outcome is the engine's answer to a Request: what to send and what the
// cache did. The edges render it; it holds no reference to the request.
type Outcome struct {
	// Status is the HTTP status to answer with. 499 means the client went
	// away before an answer was ready: nothing is to be sent.
	Status int
	// Body is the answer's body, byte-identical to the upstream's (or
	// redacted). Nil when Err is set.
	Body []byte
	// ContentType is the upstream's Content-Type; "" for none.
	ContentType string
	// Header holds the upstream's end-to-end header fields, to replay.
	Header cache.Header
	// Err, when not empty, means the proxy has no answer of the upstream's
	// to give: the edge sends its own error body with Status and this
	// message (never credentials).
	Err string
	// RetryAfter is the Retry-After value to send; "" for none.
	RetryAfter string
	// Challenge asks the client for Basic credentials (WWW-Authenticate).
	Challenge bool
	// Result is the request's cache label in metrics (metrics.CacheHit…).
	Result string

	// Cache-Status parameters; see Kind.
	Kind      Kind
	TTL       int64  // seconds of freshness left; negative when stale
	Age       int64  // seconds since the answer was fetched
	FwdStatus int    // the upstream's status, 0 for none
	Detail    string // the detail parameter, "" for none
	Stored    bool   // the answer was stored
	Collapsed bool   // the answer came from another request's fill
}

// NotModified reports whether the answer is a 304 for a conditional
// request: the edge sends headers and no body.
func (o *Outcome) NotModified() bool { return o.Status == 304 }
