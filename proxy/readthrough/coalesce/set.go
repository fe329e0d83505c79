package coalesce

import (
	"sync"
	"sync/atomic"
)

// Set is a set of keys with work in progress, cheap to ask while it is
// empty: Has costs one atomic load then, which is the common case on a hit
// path. The zero value is an empty set.
type Set[K comparable] struct {
	n  atomic.Int64 // len(m), read without the lock
	mu sync.Mutex   // protects m
	m  map[K]struct{}
}

// Has reports whether k is in the set.
func (s *Set[K]) Has(k K) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

// Add puts k in the set.
func (s *Set[K]) Add(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[K]struct{})
	}
	s.m[k] = struct{}{}
	s.n.Store(int64(len(s.m)))
}

// Remove takes k out of the set.
func (s *Set[K]) Remove(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	s.n.Store(int64(len(s.m)))
}

// Len is the number of keys in the set.
func (s *Set[K]) Len() int { return int(s.n.Load()) }
