package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// creds returns both demo credentials as -credentials expects them.
func creds() string {
	var parts []string
	for _, c := range upstreamtest.DemoCredentials() {
		parts = append(parts, c.Username+":"+c.Password)
	}
	return strings.Join(parts, ",")
}

func TestRunAsksEachKeyOnce(t *testing.T) {
	up := upstreamtest.NewServer(t, upstreamtest.Options{Users: 100, Lazy: true})
	n, err := run(t.Context(), config{URL: up.URL, First: 11, IDs: 30, Credentials: creds(), Concurrency: 8})
	if err != nil {
		t.Fatalf("got error %v, want nil", err)
	}
	if n != 60 {
		t.Errorf("got %d answered, want 60 (30 ids x 2 credentials)", n)
	}
	if got := up.Requests(); got != 60 {
		t.Errorf("got %d upstream requests, want 60", got)
	}
	for _, id := range []int{10, 11, 40, 41} {
		want := int64(2)
		if id < 11 || id > 40 {
			want = 0
		}
		if got := up.RequestsFor(strconv.Itoa(id)); got != want {
			t.Errorf("got %d requests for id %d, want %d", got, id, want)
		}
	}
}

func TestRunFails(t *testing.T) {
	up := upstreamtest.NewServer(t, upstreamtest.Options{Users: 5})
	tests := []struct {
		name string
		cfg  config
		want string // in the error
	}{
		{"unknown id", config{URL: up.URL, First: 4, IDs: 5, Credentials: creds(), Concurrency: 2}, "status 404"},
		{"wrong password", config{URL: up.URL, First: 1, IDs: 1, Credentials: "demo:nope", Concurrency: 1}, "status 401"},
		{"credentials without colon", config{URL: up.URL, First: 1, IDs: 1, Credentials: "demo", Concurrency: 1}, "item 1"},
		{"not http", config{URL: "https://127.0.0.1:1", First: 1, IDs: 1, Credentials: creds(), Concurrency: 1}, "http://"},
		{"zero ids", config{URL: up.URL, First: 1, IDs: 0, Credentials: creds(), Concurrency: 1}, "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
