package metrics

import "github.com/prometheus/client_golang/prometheus"

// BuildInfo describes the running binary, as userproxy -version prints it.
type BuildInfo struct {
	Version   string // release version, e.g. v1.4.0; "" is exported as "unknown"
	Revision  string // VCS revision it was built from; "" is exported as "unknown"
	GoVersion string // Go toolchain, e.g. go1.26.8; "" is exported as "unknown"
}

// NewBuildInfo registers userproxy_build_info{version,revision,goversion},
// a gauge that is always 1, on reg and returns it. Dashboards join on it to
// show which build each replica runs. It panics if reg already has it, as
// prometheus.MustRegister does.
func NewBuildInfo(reg prometheus.Registerer, b BuildInfo) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "userproxy_build_info",
		Help: "Build of the running userproxy: always 1, labelled with version, revision and Go version.",
		ConstLabels: prometheus.Labels{
			"version":   orUnknown(b.Version),
			"revision":  orUnknown(b.Revision),
			"goversion": orUnknown(b.GoVersion),
		},
	})
	g.Set(1)
	reg.MustRegister(g)
	return g
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
