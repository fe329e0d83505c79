package fakeupstream

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/userproxy/userproxy/internal/testkit"
)

func TestControlEndpoints(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	stats := func(t *testing.T) Stats {
		t.Helper()
		resp, body := do(t, c, http.MethodGet, s.URL+"/_fake/stats", nil, "")
		wantStatus(t, resp, body, http.StatusOK)
		var st Stats
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("decoding stats %q: %v", body, err)
		}
		return st
	}

	resp, body := do(t, c, http.MethodPost, s.URL+"/_fake/fault?mode=503", nil, "")
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = get(t, c, s, &demo, "1")
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	get(t, c, s, &demo, "2")
	do(t, c, http.MethodPut, s.URL+"/api/users/2", &demo, `{"first_name":"Zed"}`)

	resp, body = do(t, c, http.MethodPost, s.URL+"/_fake/latency?d=20ms", nil, "")
	wantStatus(t, resp, body, http.StatusOK)
	st := stats(t)
	if st.Requests != 2 || st.Writes != 1 || st.PerID["1"] != 1 || st.PerID["2"] != 1 || st.Fault != "503" || st.Latency != "20ms" {
		t.Errorf("got stats %+v, want 2 requests (1 each for ids 1, 2), 1 write, fault 503, latency 20ms", st)
	}

	resp, body = do(t, c, http.MethodPost, s.URL+"/_fake/reset", nil, "")
	wantStatus(t, resp, body, http.StatusOK)
	if st := stats(t); st.Requests != 0 || st.Writes != 0 || len(st.PerID) != 0 || st.Fault != "503" {
		t.Errorf("got stats %+v after reset, want zero counts and the fault kept", st)
	}

	do(t, c, http.MethodPost, s.URL+"/_fake/fault?mode=none", nil, "")
	do(t, c, http.MethodPost, s.URL+"/_fake/latency?d=0s", nil, "")
	resp, body = get(t, c, s, &demo, "1")
	wantStatus(t, resp, body, http.StatusOK)
}

func TestControlErrors(t *testing.T) {
	s := newServer(t, Options{})
	c := testkit.HTTPClient(t)
	tests := []struct {
		name, method, path string
		wantCode           int
	}{
		{"unknown mode", http.MethodPost, "/_fake/fault?mode=boom", http.StatusBadRequest},
		{"missing mode", http.MethodPost, "/_fake/fault", http.StatusBadRequest},
		{"bad duration", http.MethodPost, "/_fake/latency?d=soon", http.StatusBadRequest},
		{"GET a POST endpoint", http.MethodGet, "/_fake/fault?mode=hang", http.StatusMethodNotAllowed},
		{"POST stats", http.MethodPost, "/_fake/stats", http.StatusMethodNotAllowed},
		{"unknown endpoint", http.MethodPost, "/_fake/explode", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, c, tt.method, s.URL+tt.path, nil, "")
			wantStatus(t, resp, body, tt.wantCode)
			wantErrorJSON(t, body)
		})
	}
	if got := s.Stats().Fault; got != "none" {
		t.Errorf("got fault %q after failed control calls, want none", got)
	}
}

func TestControlLoopbackOnly(t *testing.T) {
	h := NewHandler(Options{})
	for _, addr := range []string{"192.0.2.10:4000", "[2001:db8::1]:4000", "garbage"} {
		t.Run(addr, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/_fake/fault?mode=hang", nil)
			r.RemoteAddr = addr
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusForbidden {
				t.Errorf("got status %d, want 403", w.Code)
			}
		})
	}
	if got := h.Stats().Fault; got != "none" {
		t.Errorf("got fault %q set by a remote client, want none", got)
	}
	r := httptest.NewRequest(http.MethodPost, "/_fake/fault?mode=hang", nil)
	r.RemoteAddr = "[::1]:4000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK || h.Stats().Fault != "hang" {
		t.Errorf("got status %d, fault %q from [::1], want 200, hang", w.Code, h.Stats().Fault)
	}
}
