package coalesce

import (
	"fmt"
	"sync"
)

// Reads shares reads in flight: a caller that asks for a key whose read is
// already on its way waits for that read's answer instead of sending its
// own. It differs from Group in what it is for: a read is short and
// bounded, so those who join simply wait, and its records are pooled, so
// that a read (a cache hit, say) allocates nothing here. The zero value is
// ready to use.
type Reads[K comparable, V any] struct {
	mu   sync.Mutex // protects m and every read's refs
	m    map[K]*read[V]
	pool sync.Pool // of *read[V]
}

// read is one read in flight. Its result is written by the caller that
// makes it before done.Done and read by the others after done.Wait.
type read[V any] struct {
	done sync.WaitGroup
	refs int // the reader and those waiting on it
	val  V
	err  error
}

// Do returns fn's answer for key, from a read of key already in flight or
// from its own call of fn, which others may then share; shared reports the
// former. fn runs on the caller's goroutine. joined, if not nil, is called
// as a caller begins to wait on another's read (a metric counts it there,
// so it is seen while the wait lasts). If fn panics, those waiting get
// ErrPanicked and the panic carries on in the caller that ran it.
func (r *Reads[K, V]) Do(key K, joined func(), fn func() (V, error)) (v V, shared bool, err error) {
	r.mu.Lock()
	if rd, found := r.m[key]; found {
		rd.refs++
		r.mu.Unlock()
		if joined != nil {
			joined()
		}
		rd.done.Wait()
		v, err = rd.val, rd.err
		r.release(rd)
		return v, true, err
	}
	rd, _ := r.pool.Get().(*read[V])
	if rd == nil {
		rd = &read[V]{}
	}
	rd.refs = 1
	rd.done.Add(1)
	if r.m == nil {
		r.m = make(map[K]*read[V])
	}
	r.m[key] = rd
	r.mu.Unlock()
	normal := false
	defer func() {
		rd.val, rd.err = v, err
		if !normal { // fn panicked, or called runtime.Goexit
			rd.err = ErrPanicked
			if p := recover(); p != nil {
				rd.err = fmt.Errorf("%w: %v", ErrPanicked, p)
				defer panic(p)
			}
		}
		r.mu.Lock()
		delete(r.m, key)
		r.mu.Unlock()
		rd.done.Done()
		r.release(rd)
	}()
	v, err = fn()
	normal = true
	return v, false, err
}

// release drops one reference to rd, and pools it after the last one.
func (r *Reads[K, V]) release(rd *read[V]) {
	r.mu.Lock()
	rd.refs--
	last := rd.refs == 0
	r.mu.Unlock()
	if last {
		*rd = read[V]{} // drops the answer; a zero WaitGroup is ready for reuse
		r.pool.Put(rd)
	}
}
