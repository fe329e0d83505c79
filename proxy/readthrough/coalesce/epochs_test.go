package coalesce

import "testing"

func TestEpochsCountPerGroup(t *testing.T) {
	var e Epochs
	a, b := Hash("1"), Hash("2")
	if a%256 == b%256 {
		t.Fatal("the test needs two ids in different groups")
	}
	before := e.Now(a)
	e.Bump(a)
	if e.Now(a) == before {
		t.Error("Now after Bump: unchanged, want a new count")
	}
	if got := e.Now(b); got != 0 {
		t.Errorf("another group's count: got %d, want 0", got)
	}
	if e.Now(a+256) != e.Now(a) {
		t.Error("hashes equal modulo the group count: want one group")
	}
}

func TestHash2SeparatesItsParts(t *testing.T) {
	if Hash2("ab", "c") == Hash2("a", "bc") {
		t.Error(`Hash2("ab", "c") == Hash2("a", "bc"), want them apart`)
	}
	// FNV-1a test vector: the 32-bit hash of "a".
	if got, want := Hash("a"), uint32(0xe40c292c); got != want {
		t.Errorf(`Hash("a"): got %#x, want %#x`, got, want)
	}
}
