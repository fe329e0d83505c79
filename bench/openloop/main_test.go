package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestDraws(t *testing.T) {
	paths, authOf := draws(101, 50, 4, 7)
	seen := map[int]bool{}
	for k, p := range paths {
		id, err := strconv.Atoi(strings.TrimPrefix(p, "/api/users/"))
		if err != nil || id < 101 || id >= 151 {
			t.Fatalf("draw %d is %q, want /api/users/ and an id in [101, 151)", k, p)
		}
		seen[id] = true
		if authOf[k] != k%4 {
			t.Fatalf("draw %d uses credential %d, want %d (rotating)", k, authOf[k], k%4)
		}
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct ids drawn, want all 50", len(seen))
	}
	again, _ := draws(101, 50, 4, 7)
	if !slices.Equal(paths, again) {
		t.Error("the same seed drew different ids")
	}
	other, _ := draws(101, 50, 4, 8)
	if slices.Equal(paths, other) {
		t.Error("another seed drew the same ids")
	}
}

func TestBasicHeaders(t *testing.T) {
	got, err := basicHeaders("bench1:pw,b:c")
	if err != nil || !slices.Equal(got, []string{"Basic YmVuY2gxOnB3", "Basic Yjpj"}) {
		t.Errorf("basicHeaders = %q, %v", got, err)
	}
	_, err = basicHeaders("bench1:pw,secret")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v: want one that does not repeat the item", err)
	}
}
