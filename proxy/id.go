package proxy

// The default user id rule. The upstream reads ids as numbers, so 1, 01
// and 001 name one user: accepting them as three ids would give that user
// three sets of cache keys, and a write to one spelling would leave the
// others' entries standing. With the default rule a user id is a number
// and is used (as cache key, in the upstream call, in invalidations) in
// its canonical spelling, without leading zeros. A tenant whose ids are
// not numbers sets its own rule (Options.ValidID, -id-pattern), and its
// ids are then compared as they are sent.

// maxIDDigits bounds a numeric id: a uint64 has at most 20.
const maxIDDigits = 20

// numericID reports whether id matches the default rule, ^[0-9]{1,20}$, as
// a byte loop: it runs on every request, before any I/O, and needs no
// regexp.
func numericID(id string) bool {
	if len(id) == 0 || len(id) > maxIDDigits {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalID is numeric id without leading zeros ("0" for zero). It
// slices id, so it does not allocate.
func canonicalID(id string) string {
	i := 0
	for i < len(id)-1 && id[i] == '0' {
		i++
	}
	return id[i:]
}
