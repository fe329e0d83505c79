package coalesce

import "sync/atomic"

// Epochs counts events per group of keys, so that a caller can tell
// whether any event of a key's group happened between two moments by
// comparing two readings. Keys are grouped by a hash (Hash, Hash2): an
// event of another key of the group is a false alarm, never a missed one,
// which suits every use where a false alarm only costs redundant work.
// The zero value counts from zero.
type Epochs struct {
	groups [256]atomic.Uint64
}

// Now is the count of h's group, to compare with a later reading.
func (e *Epochs) Now(h uint32) uint64 { return e.group(h).Load() }

// Bump counts an event in h's group.
func (e *Epochs) Bump(h uint32) { e.group(h).Add(1) }

func (e *Epochs) group(h uint32) *atomic.Uint64 { return &e.groups[h%uint32(len(e.groups))] }

// FNV-1a, 32 bits.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// Hash is the FNV-1a hash of s.
func Hash(s string) uint32 { return fnv1a(fnvOffset, s) }

// Hash2 hashes the pair (a, b): FNV-1a over a, a zero byte, then b, so
// ("ab", "c") and ("a", "bc") differ.
func Hash2(a, b string) uint32 { return fnv1a(fnv1a(fnvOffset, a)*fnvPrime, b) }

func fnv1a(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}
