package proxy

import (
	"strconv"

	"github.com/userproxy/userproxy/proxy/readthrough"
)

// statusClientGone is the Outcome status of a request whose client went
// away before its answer was ready: nothing is sent.
const statusClientGone = 499

// Cache-Status (RFC 9211) values the edges set themselves.
var (
	statusInvalidID = []string{"userproxy; detail=invalid-id"}
	statusBypass    = []string{"userproxy; fwd=bypass"}
	statusMethod    = []string{"userproxy; fwd=method"}
	statusBadPath   = []string{"userproxy; detail=invalid-path"}
)

const msgInvalidID = "invalid user id"

// cacheStatus renders o's Cache-Status value. A hit's comes precomputed, so
// the hit path does not allocate.
func cacheStatus(o *readthrough.Outcome) []string {
	switch o.Kind {
	case readthrough.KindHit:
		return hitStatus(o.TTL, o.Detail == "negative")
	case readthrough.KindStale:
		return []string{"userproxy; hit; fwd=stale" + fwdParams(o.FwdStatus, o.Detail) + "; ttl=" + strconv.FormatInt(o.TTL, 10)}
	case readthrough.KindRequest:
		return []string{"userproxy; fwd=request" + fwdParams(o.FwdStatus, o.Detail)}
	case readthrough.KindRefused:
		return []string{"userproxy; detail=" + o.Detail}
	default:
		s := "userproxy; fwd=uri-miss"
		if o.FwdStatus != 0 {
			s += "; fwd-status=" + strconv.Itoa(o.FwdStatus)
		}
		if o.Stored {
			s += "; stored"
		}
		if o.Collapsed {
			s += "; collapsed"
		}
		if o.Detail != "" {
			s += "; detail=" + o.Detail
		}
		return []string{s}
	}
}

// fwdParams renders the fwd-status and detail parameters, each if set.
func fwdParams(fwdStatus int, detail string) string {
	s := ""
	if fwdStatus != 0 {
		s += "; fwd-status=" + strconv.Itoa(fwdStatus)
	}
	if detail != "" {
		s += "; detail=" + detail
	}
	return s
}

// Header values the hit path would otherwise allocate on every response.
// Each is a one-element slice assigned straight into a header map (or read
// by the fasthttp front); it is never modified (net/http only reads it, and
// an Add would reallocate, since each slice is exactly full).

// maxSmallInt bounds the precomputed decimal values: enough for the
// Content-Length of a user body and an Age of a little over an hour.
const maxSmallInt = 1 << 12

var (
	smallInts       = precompute(func(n int) string { return strconv.Itoa(n) })
	hitStatuses     = precompute(func(n int) string { return "userproxy; hit; ttl=" + strconv.Itoa(n) })
	negativeHitStat = precompute(func(n int) string { return "userproxy; hit; ttl=" + strconv.Itoa(n) + "; detail=negative" })
	ctJSON          = []string{"application/json"}
	ctJSONUTF8      = []string{"application/json; charset=utf-8"}
	nosniff         = []string{"nosniff"}
	basicChallenge  = []string{`Basic realm="userproxy", charset="UTF-8"`}
)

func precompute(f func(int) string) *[maxSmallInt][]string {
	var v [maxSmallInt][]string
	for i := range v {
		v[i] = []string{f(i)}
	}
	return &v
}

// intValue is n as a header value.
func intValue(n int64) []string {
	if n >= 0 && n < maxSmallInt {
		return smallInts[n]
	}
	return []string{strconv.FormatInt(n, 10)}
}

// hitStatus is the Cache-Status of a fresh hit with ttl seconds left.
func hitStatus(ttl int64, negative bool) []string {
	switch {
	case ttl < 0 || ttl >= maxSmallInt:
		s := "userproxy; hit; ttl=" + strconv.FormatInt(ttl, 10)
		if negative {
			s += "; detail=negative"
		}
		return []string{s}
	case negative:
		return negativeHitStat[ttl]
	default:
		return hitStatuses[ttl]
	}
}

// contentTypeValue is ct as a header value, shared for the common JSON types.
func contentTypeValue(ct string) []string {
	switch ct {
	case "application/json":
		return ctJSON
	case "application/json; charset=utf-8":
		return ctJSONUTF8
	}
	return []string{ct}
}
