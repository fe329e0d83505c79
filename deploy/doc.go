// Package deploy holds the tests of userproxy's deployment artefacts: the
// container image build, the Kubernetes manifests, the Prometheus rules, the
// Grafana dashboard and a real-Prometheus end-to-end run. It is a separate Go
// module so that k8s.io/api stays out of the proxy's own dependencies.
package deploy
