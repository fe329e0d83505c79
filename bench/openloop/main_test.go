package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// TestConnGet: a worker's connection reads whole answers, tells a 200 from
// another status, and opens a new connection when the server closes one.
func TestConnGet(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Basic x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/users/7" {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/api/users/503" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, strings.Repeat("b", 5000))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := &conn{addr: strings.TrimPrefix(srv.URL, "http://"), timeout: 5 * time.Second}
	defer c.close()
	steps := []struct {
		path   string
		wantOK bool
	}{{"/api/users/1", true}, {"/api/users/503", false}, {"/api/users/2", true}, {"/api/users/7", true}, {"/api/users/3", true}}
	for _, s := range steps {
		ok, err := c.get(s.path, "Basic x")
		if err != nil || ok != s.wantOK {
			t.Fatalf("get %s = %v, %v; want %v, no error", s.path, ok, err, s.wantOK)
		}
	}
	// One connection for the first four, a second after /7's close.
	if got := conns.Load(); got != 2 {
		t.Errorf("%d connections opened, want 2", got)
	}
}
