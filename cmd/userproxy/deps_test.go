package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// testOnlyPackages are test code, which has no place in the production
// binary. A test helper imported by non-test code is the usual way in: the
// demo mode's fake upstream (package fakeupstream) must stay free of both.
var testOnlyPackages = []string{"testing", "net/http/httptest"}

// TestBinaryLinksNoTestPackages lists the dependencies of this package (not
// of its tests) with `go list -deps` and fails on any of testOnlyPackages.
func TestBinaryLinksNoTestPackages(t *testing.T) {
	goBin := findGo(t)
	cmd := exec.Command(goBin, "list", "-deps", ".")
	cmd.Env = os.Environ()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s list -deps .: %v\n%s", goBin, err, stderr)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "net/http") {
		t.Fatalf("got dependencies %q, want a list that includes net/http", deps)
	}
	for _, p := range testOnlyPackages {
		if slices.Contains(deps, p) {
			t.Errorf("the userproxy binary links %s; want it free of test-only packages (run `go list -deps ./cmd/userproxy` and look for who imports it)", p)
		}
	}
}

// findGo returns the go command: the one on PATH (go test puts its own
// GOROOT/bin first), else the one in the GOROOT this test was built with.
// Without either the test is skipped, but under CI it fails: there the
// check must run.
func findGo(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	name := "go"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	//lint:ignore SA1019 a fallback only; where it is wrong, the Stat below says so
	p := filepath.Join(runtime.GOROOT(), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no go command on PATH or at %s (CI is set, so this is a failure)", p)
	}
	t.Skipf("no go command on PATH or at %s; skipping", p)
	return ""
}
