package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		in   BuildInfo
		want string
	}{
		{"all known", BuildInfo{Version: "v1.2.3", Revision: "abc123", GoVersion: "go1.26.8"},
			`userproxy_build_info{goversion="go1.26.8",revision="abc123",version="v1.2.3"} 1`},
		{"empty fields are unknown", BuildInfo{GoVersion: "go1.26.8"},
			`userproxy_build_info{goversion="go1.26.8",revision="unknown",version="unknown"} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			NewBuildInfo(reg, tt.in)
			want := "# HELP userproxy_build_info Build of the running userproxy: always 1, labelled with version, revision and Go version.\n" +
				"# TYPE userproxy_build_info gauge\n" + tt.want + "\n"
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "userproxy_build_info"); err != nil {
				t.Errorf("got a different userproxy_build_info: %v", err)
			}
		})
	}
}

func TestNewBuildInfoTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewBuildInfo(reg, BuildInfo{})
	defer func() {
		if recover() == nil {
			t.Error("second NewBuildInfo on one registry: got no panic, want one")
		}
	}()
	NewBuildInfo(reg, BuildInfo{})
}
