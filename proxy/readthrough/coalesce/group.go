package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrPanicked is what the callers waiting on a call get when the function
// they share panicked. The panic itself goes on in the caller that ran it.
var ErrPanicked = errors.New("coalesce: the shared call panicked")

// Group runs at most one call per key at a time; callers that ask for a key
// while its call runs wait for that call's result instead of making their
// own. The zero value is ready to use.
//
// Unlike golang.org/x/sync/singleflight's DoChan, the first caller runs the
// function on its own goroutine (no goroutine start and hand-off back, each
// a wait in the run queue under load), while the callers that join it can
// still stop waiting when their context ends.
type Group[K comparable, V any] struct {
	mu sync.Mutex     // protects m
	m  map[K]*call[V] // calls in flight
}

type call[V any] struct {
	done   chan struct{} // closed once val and err are set
	val    V
	err    error
	joined atomic.Int32 // callers waiting on it, for tests
}

// Do returns fn's result for key, running fn only if no call for key is in
// flight; shared reports that the result came from another caller's call.
// The caller that runs fn waits for it whatever ctx does: fn must bound
// itself. A caller that joins returns ctx.Err() as soon as ctx ends, and
// fn's result otherwise.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func() (V, error)) (v V, shared bool, err error) {
	return g.DoThen(ctx, key, func() (V, func(), error) {
		v, err := fn()
		return v, nil, err
	}, nil)
}

// DoThen is Do for a call whose result is ready before all its work is
// done: fn returns its result and then, the rest of its work (nil for
// none). Every caller gets the result at once, the one that ran fn too;
// spawn runs then on a goroutine of its own. Until then returns, the call
// stays in flight: callers that come meanwhile get its result without a
// call of their own.
func (g *Group[K, V]) DoThen(ctx context.Context, key K, fn func() (V, func(), error), spawn func(func())) (v V, shared bool, err error) {
	g.mu.Lock()
	if c, ok := g.m[key]; ok {
		c.joined.Add(1)
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.val, true, c.err
		case <-ctx.Done():
			var zero V
			return zero, true, ctx.Err()
		}
	}
	c := &call[V]{done: make(chan struct{})}
	if g.m == nil {
		g.m = make(map[K]*call[V])
	}
	g.m[key] = c
	g.mu.Unlock()
	g.run(key, c, fn, spawn)
	return c.val, false, c.err
}

// run calls fn for c and lets c's waiters go, even if fn panics (they then
// get ErrPanicked; the panic carries on here). The key stays in flight
// until fn's then, if any, has run (spawned).
func (g *Group[K, V]) run(key K, c *call[V], fn func() (V, func(), error), spawn func(func())) {
	normal := false
	var then func()
	defer func() {
		if !normal { // fn panicked, or called runtime.Goexit
			c.err = ErrPanicked
			if p := recover(); p != nil {
				c.err = fmt.Errorf("%w: %v", ErrPanicked, p)
				defer panic(p)
			}
		}
		if then == nil {
			g.forget(key) // before the waiters go: nobody joins a call that has ended
			close(c.done)
			return
		}
		close(c.done)
		spawn(func() {
			defer g.forget(key)
			then()
		})
	}()
	c.val, then, c.err = fn()
	normal = true
}

func (g *Group[K, V]) forget(key K) {
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
}

// Running reports whether a call for key is in flight.
func (g *Group[K, V]) Running(key K) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.m[key]
	return ok
}
