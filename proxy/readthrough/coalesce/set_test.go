package coalesce

import "testing"

func TestSet(t *testing.T) {
	var s Set[string]
	if s.Has("a") || s.Len() != 0 {
		t.Fatal("zero Set: want empty")
	}
	s.Add("a")
	s.Add("b")
	if !s.Has("a") || !s.Has("b") || s.Has("c") || s.Len() != 2 {
		t.Fatalf("after Add a, b: Has a %v, b %v, c %v, Len %d; want true, true, false, 2", s.Has("a"), s.Has("b"), s.Has("c"), s.Len())
	}
	s.Remove("a")
	s.Remove("c") // absent: no effect
	if s.Has("a") || !s.Has("b") || s.Len() != 1 {
		t.Fatalf("after Remove a: Has a %v, b %v, Len %d; want false, true, 1", s.Has("a"), s.Has("b"), s.Len())
	}
}

func TestSetHasOnEmptyDoesNotAllocate(t *testing.T) {
	var s Set[string]
	if got := testing.AllocsPerRun(100, func() { s.Has("a") }); got != 0 {
		t.Errorf("Has on an empty set: %v allocations, want 0", got)
	}
}
