package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

func TestVersionFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// No -upstream-url: -version must not need a valid configuration.
	code := run(context.Background(), []string{"-version"}, env(), &stdout, &stderr, nil)
	if code != 0 {
		t.Fatalf("-version exit status: got %d, want 0 (stderr %q)", code, stderr.String())
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "userproxy ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
		t.Errorf("-version output: got %q, want one line starting \"userproxy \" naming %s", out, runtime.Version())
	}
}

func TestOperatorFlagsValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"sample rate above 1", []string{"-access-log-sample-rate", "1.5"}, "-access-log-sample-rate"},
		{"negative sample rate", []string{"-access-log-sample-rate", "-0.1"}, "-access-log-sample-rate"},
		{"NaN sample rate", []string{"-access-log-sample-rate", "NaN"}, "-access-log-sample-rate"},
		{"unknown log format", []string{"-log-format", "xml"}, "json, text or auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := runConfig(t, append([]string{"-demo"}, tt.args...), env())
			if code != 2 || !strings.Contains(msg, tt.want) {
				t.Errorf("got exit %d %q, want 2 and a message naming %s", code, msg, tt.want)
			}
		})
	}
}

func TestLogFormat(t *testing.T) {
	regular, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regular.Close() })
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devNull.Close() })

	tests := []struct {
		name   string
		format string
		w      any
		want   string
	}{
		{"explicit json", "json", devNull, "json"},
		{"explicit text", "text", &bytes.Buffer{}, "text"},
		{"auto on a pipe or buffer", "auto", &bytes.Buffer{}, "json"},
		{"auto on a regular file", "auto", regular, "json"},
		// A terminal is a character device; so is /dev/null, the one
		// character device every test machine has.
		{"auto on a character device", "auto", devNull, "text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			switch w := tt.w.(type) {
			case *os.File:
				got = logFormat(tt.format, w)
			case *bytes.Buffer:
				got = logFormat(tt.format, w)
			}
			if got != tt.want {
				t.Errorf("logFormat(%q): got %q, want %q", tt.format, got, tt.want)
			}
		})
	}
}

func TestOperatorFeaturesRunning(t *testing.T) {
	s := start(t, "-demo", "-pprof", "-access-log-sample-rate", "1", "-log-format", "json")
	demo := upstreamtest.DemoCredentials()[0]

	req, _ := http.NewRequest(http.MethodGet, s.proxy+"/api/users/3", nil)
	req.SetBasicAuth(demo.Username, demo.Password)
	req.Header.Set("X-Request-Id", "op-test-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/users/3: %v", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "op-test-1" {
		t.Errorf("X-Request-Id echoed: got %q, want %q", got, "op-test-1")
	}

	_, metricsText := get(t, s.admin+"/metrics", "", "")
	if want := `goversion="` + runtime.Version() + `"`; !strings.Contains(metricsText, "userproxy_build_info{") || !strings.Contains(metricsText, want) {
		t.Errorf("/metrics lacks userproxy_build_info with %s", want)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/debug/pprof/", 200},
		{"/debug/pprof/heap?debug=1", 200},
		{"/debug/pprof/goroutine?debug=1", 200},
		{"/debug/pprof/cmdline", 404}, // would show secrets given as flags
		{"/metrics", 200},
		{"/healthz", 200},
	} {
		if resp, _ := get(t, s.admin+tc.path, "", ""); resp.StatusCode != tc.want {
			t.Errorf("admin %s with -pprof: got %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}

	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"request_id":"op-test-1"`) {
		t.Errorf("access log lacks the request with id op-test-1:\n%s", logs)
	}
	if strings.Contains(logs, demo.Password) {
		t.Errorf("logs contain the password:\n%s", logs)
	}
}

func TestPprofOffByDefault(t *testing.T) {
	s := start(t, "-demo")
	if resp, _ := get(t, s.admin+"/debug/pprof/", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("admin /debug/pprof/ without -pprof: got %d, want 404", resp.StatusCode)
	}
}

// TestPprofBehindTheToken: with an admin token, every profile asks for it
// (401 without, 200 with), while the rest of the admin listener does not.
func TestPprofBehindTheToken(t *testing.T) {
	const token = "pprof-test-token-0123456789"
	s := start(t, "-demo", "-pprof", "-admin-token", token)
	bearer := func(path, tok string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.admin+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap?debug=1", "/debug/pprof/symbol"} {
		if got := bearer(path, ""); got != http.StatusUnauthorized {
			t.Errorf("%s without the token: got %d, want 401", path, got)
		}
		if got := bearer(path, "wrong-token-0123456789"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: got %d, want 401", path, got)
		}
		if got := bearer(path, token); got != http.StatusOK {
			t.Errorf("%s with the token: got %d, want 200", path, got)
		}
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if got := bearer(path, ""); got != http.StatusOK {
			t.Errorf("%s without the token: got %d, want 200", path, got)
		}
	}
}
