package breaker

import (
	"testing"

	"github.com/sony/gobreaker/v2"
)

func TestFromAndString(t *testing.T) {
	for _, tc := range []struct {
		in   gobreaker.State
		want State
		name string
	}{
		{gobreaker.StateClosed, Closed, "closed"},
		{gobreaker.StateHalfOpen, HalfOpen, "half-open"},
		{gobreaker.StateOpen, Open, "open"},
	} {
		got := From(tc.in)
		if got != tc.want || got.String() != tc.name || got.String() != tc.in.String() {
			t.Errorf("From(%v) = %v (%q), want %v (%q)", tc.in, got, got.String(), tc.want, tc.name)
		}
	}
}

func TestUnknownState(t *testing.T) {
	if got, want := State(7).String(), "unknown breaker state 7"; got != want {
		t.Errorf("State(7).String(): got %q, want %q", got, want)
	}
}
