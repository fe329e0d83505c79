package proxy_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/userproxy/userproxy/proxy"
)

func TestAccessLog(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		roll    float64 // what Rand returns
		status  int
		wantLog bool
	}{
		{"every request at rate 1", 1, 0.99, http.StatusOK, true},
		{"sampled in", 0.1, 0.05, http.StatusOK, true},
		{"sampled out", 0.1, 0.5, http.StatusOK, false},
		{"5xx always logged", 0.1, 0.5, http.StatusBadGateway, true},
		{"4xx sampled like the rest", 0.1, 0.5, http.StatusNotFound, false},
		{"off at rate 0, even a 5xx", 0, 0, http.StatusBadGateway, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { now = now.Add(250 * time.Millisecond); return now }
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Status", "userproxy; hit; ttl=42")
				w.WriteHeader(tt.status)
				w.Write([]byte("hello"))
			})
			h := proxy.WithRequestID(proxy.AccessLog(next, proxy.AccessLogOptions{
				Logger:     slog.New(slog.NewJSONHandler(&buf, nil)),
				SampleRate: tt.rate,
				Rand:       func() float64 { return tt.roll },
				Now:        clock,
			}))
			req := httptest.NewRequest(http.MethodGet, "/api/users/7?token=secret-query", nil)
			req.SetBasicAuth("alice", "secret-password")
			req.Header.Set("X-Request-Id", "req-7")
			h.ServeHTTP(httptest.NewRecorder(), req)

			if !tt.wantLog {
				if buf.Len() != 0 {
					t.Errorf("access log: got %q, want nothing", buf.String())
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("access log record %q: %v", buf.String(), err)
			}
			want := map[string]any{
				"msg": "request", "method": "GET", "path": "/api/users/7", "status": float64(tt.status),
				"bytes": float64(5), "duration_seconds": 0.25, "cache_status": "userproxy; hit; ttl=42",
				"request_id": "req-7",
			}
			for k, v := range want {
				if rec[k] != v {
					t.Errorf("access log field %s: got %v, want %v", k, rec[k], v)
				}
			}
			for _, secret := range []string{"secret-password", "secret-query", "YWxpY2U6"} {
				if strings.Contains(buf.String(), secret) {
					t.Errorf("access log contains %q: %s", secret, buf.String())
				}
			}
		})
	}
}

func TestAccessLogDisabledReturnsNext(t *testing.T) {
	next := http.NotFoundHandler()
	var buf bytes.Buffer
	for _, opts := range []proxy.AccessLogOptions{
		{SampleRate: 1},
		{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), SampleRate: 0},
	} {
		h := proxy.AccessLog(next, opts)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}
	if buf.Len() != 0 {
		t.Errorf("disabled access log wrote %q, want nothing", buf.String())
	}
}

func TestAccessLogImplicitStatus(t *testing.T) {
	var buf bytes.Buffer
	h := proxy.AccessLog(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		proxy.AccessLogOptions{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), SampleRate: 1})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodHead, "/x", nil))
	if !strings.Contains(buf.String(), `"status":200`) {
		t.Errorf("access log of a handler that wrote nothing: got %q, want status 200", buf.String())
	}
}
