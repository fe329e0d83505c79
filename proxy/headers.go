package proxy

import "strconv"

// Header values the hit path would otherwise allocate on every response.
// Each is a one-element slice assigned straight into the header map; it is
// never modified (net/http only reads it, and an Add would reallocate,
// since each slice is exactly full).

// maxSmallInt bounds the precomputed decimal values: enough for the
// Content-Length of a user body and an Age of a little over an hour.
const maxSmallInt = 1 << 12

var (
	smallInts       = precompute(func(n int) string { return strconv.Itoa(n) })
	hitStatuses     = precompute(func(n int) string { return "userproxy; hit; ttl=" + strconv.Itoa(n) })
	negativeHitStat = precompute(func(n int) string { return "userproxy; hit; ttl=" + strconv.Itoa(n) + "; detail=negative" })
	ctJSON          = []string{"application/json"}
	ctJSONUTF8      = []string{"application/json; charset=utf-8"}
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
