package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/userproxy/userproxy/metrics"
)

// version and revision are set at link time by deploy/build.sh:
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.revision=0123abcd" ./cmd/userproxy
//
// Empty means: take them from the build information the Go toolchain
// embeds (module version, vcs.revision), or "unknown".
var (
	version  string
	revision string
)

// currentBuild describes this binary.
func currentBuild() metrics.BuildInfo {
	b := metrics.BuildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version // go install …@v1.4.0
	}
	if b.Revision == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
	}
	return b
}

// printVersion writes the one line userproxy -version prints.
func printVersion(w io.Writer, b metrics.BuildInfo) {
	fmt.Fprintf(w, "userproxy %s (revision %s, %s, %s/%s)\n",
		orUnknown(b.Version), orUnknown(b.Revision), b.GoVersion, runtime.GOOS, runtime.GOARCH)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
