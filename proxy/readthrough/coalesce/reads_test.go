package coalesce

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// readersOf reports whether n callers share key's read in flight.
func readersOf[K comparable, V any](r *Reads[K, V], key K, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd, ok := r.m[key]
	return ok && rd.refs == n
}

func TestReadsShareAReadInFlight(t *testing.T) {
	var r Reads[string, int]
	var calls atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	errRead := errors.New("read failed")
	fn := func() (int, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return 7, errRead
	}
	var wg sync.WaitGroup
	var firstShared atomic.Bool
	wg.Go(func() {
		_, shared, _ := r.Do("k", nil, fn)
		firstShared.Store(shared)
	})
	<-started
	const n = 5
	var sharedCount atomic.Int64
	for range n {
		wg.Go(func() {
			v, shared, err := r.Do("k", nil, fn)
			if v != 7 || !errors.Is(err, errRead) {
				t.Errorf("joiner: got (%d, %v), want (7, the read's error)", v, err)
			}
			if shared {
				sharedCount.Add(1)
			}
		})
	}
	for !readersOf(&r, "k", 1+n) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("reads made: got %d, want 1", got)
	}
	if firstShared.Load() || sharedCount.Load() != n {
		t.Errorf("shared: first %v, joiners %d; want false, %d", firstShared.Load(), sharedCount.Load(), n)
	}
	// Once it has ended, the next caller reads for itself.
	if _, shared, _ := r.Do("k", nil, fn); shared {
		t.Error("a read after the first ended: shared, want its own")
	}
}

func TestReadsPanicReleasesJoiners(t *testing.T) {
	var r Reads[string, int]
	started, release := make(chan struct{}), make(chan struct{})
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		r.Do("k", nil, func() (int, error) { close(started); <-release; panic("boom") })
	}()
	<-started
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.Do("k", nil, func() (int, error) { return 0, nil })
		errc <- err
	}()
	for !readersOf(&r, "k", 2) {
		runtime.Gosched()
	}
	close(release)
	if err := <-errc; !errors.Is(err, ErrPanicked) {
		t.Errorf("joiner of a panicking read: got %v, want ErrPanicked", err)
	}
	if p := <-recovered; p != "boom" {
		t.Errorf("the reader: recovered %v, want the panic itself", p)
	}
}
