package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// userproxyBin is the binary deploy/build.sh built for this test run: the
// same static build the image ships. Tests only run it, never change it.
var userproxyBin string

// testVersion is stamped into userproxyBin.
const testVersion = "v0.0.0-deploytest"

// TestMain builds the userproxy binary once, with the image's build script,
// for the tests that check it or run it.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "userproxy-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	userproxyBin = filepath.Join(dir, "userproxy")
	cmd := exec.Command("sh", "build.sh", userproxyBin)
	cmd.Env = append(os.Environ(), "VERSION="+testVersion, "REVISION=deadbeef")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building userproxy with deploy/build.sh: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
