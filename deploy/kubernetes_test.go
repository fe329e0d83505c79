package deploy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizations are the directories `kubectl kustomize` must render.
var kustomizations = []string{"kubernetes/base", "kubernetes/overlays/example"}

// render runs kustomize (the library kubectl embeds) on dir and strictly
// decodes every rendered document.
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	objs, err := decodeStream(out)
	if err != nil {
		t.Fatalf("kustomize build %s renders documents that do not strictly decode:\n%v", dir, err)
	}
	return objs
}

func TestManifestFilesDecodeStrictly(t *testing.T) {
	var files []string
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("found %d YAML files under kubernetes/, want the base, overlay and optional manifests", len(files))
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(path) == "kustomization.yaml" {
				var k types.Kustomization
				if err := strictUnmarshal(b, &k); err != nil {
					t.Errorf("not a valid Kustomization: %v", err)
				}
				return
			}
			objs, err := decodeStream(b)
			if err != nil {
				t.Error(err)
			}
			if len(objs) == 0 && err == nil {
				t.Error("no documents")
			}
		})
	}
}

func TestStrictDecodingRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"unknown container field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          image: b\n          imagePullPolicyy: Always\n"},
		{"wrongly cased field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIp: None\n"},
		{"duplicate key", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: two\n"},
		{"unknown kind", "apiVersion: v1\nkind: Servise\nmetadata: {name: x}\n"},
		{"unknown ServiceMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoints:\n    - port: admin\n      intervall: 30s\n"},
		{"unknown PodMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec:\n  podMetricEndpoints: []\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeStream([]byte(tt.doc)); err == nil {
				t.Errorf("decoding %q: got no error, want one", tt.doc)
			}
		})
	}
}

func TestKustomizationsRender(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			dep := sidecarDeployment(t, objs)
			checkSidecar(t, dep)
			checkMonitoring(t, objs, dep)
			checkReferences(t, objs, dep, dir != "kubernetes/base")
		})
	}
}

func TestOverlayChangesWhatItSays(t *testing.T) {
	objs := render(t, "kubernetes/overlays/example")
	dep := sidecarDeployment(t, objs)
	if dep.Namespace != "userproxy-example" {
		t.Errorf("namespace: got %q, want userproxy-example", dep.Namespace)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas: got %v, want the patched 1", dep.Spec.Replicas)
	}
	sc := userproxyContainer(t, dep)
	if sc.Image != "registry.example.com/userproxy:v0.1.0" {
		t.Errorf("userproxy image: got %q, want registry.example.com/userproxy:v0.1.0", sc.Image)
	}
	if got := sc.Resources.Limits.Memory().String(); got != "96Mi" {
		t.Errorf("patched memory limit: got %s, want 96Mi", got)
	}
	if sc.Resources.Requests.Cpu().IsZero() {
		t.Error("the patch dropped the CPU request: got none, want the base's")
	}
	if !slices.ContainsFunc(objs, func(o object) bool { return o.gvk == "apps/v1 Deployment" && o.name == "userproxy-redis" }) {
		t.Error("overlay lacks the development Redis Deployment")
	}
}

// sidecarDeployment returns the one Deployment that runs userproxy.
func sidecarDeployment(t *testing.T, objs []object) *appsv1.Deployment {
	t.Helper()
	var found []*appsv1.Deployment
	for _, o := range objs {
		if d, ok := o.obj.(*appsv1.Deployment); ok && slices.ContainsFunc(d.Spec.Template.Spec.InitContainers, isUserproxy) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d Deployments with a userproxy init container, want 1", len(found))
	}
	return found[0]
}

func isUserproxy(c corev1.Container) bool { return c.Name == "userproxy" }

func userproxyContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(d.Spec.Template.Spec.InitContainers, isUserproxy)
	if i < 0 {
		t.Fatal("no userproxy init container")
	}
	return d.Spec.Template.Spec.InitContainers[i]
}

// flagValue returns the value of -name in args ("-name=value" form).
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// checkSidecar checks the promises of deploy/kubernetes/README.md about the
// userproxy sidecar.
func checkSidecar(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	c := userproxyContainer(t, d)
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("userproxy init container: restartPolicy is not Always, so it is not a native sidecar")
	}
	for _, a := range c.Args {
		if !strings.HasPrefix(a, "-") || !strings.Contains(a, "=") {
			t.Errorf("arg %q: want the -flag=value form, so flags and values cannot be misread", a)
		}
	}

	listen, _ := flagValue(c.Args, "listen")
	if host, _, err := net.SplitHostPort(listen); err != nil || (host != "127.0.0.1" && host != "localhost") {
		t.Errorf("-listen=%q: want a loopback address, so only the frontend in the pod can call the proxy", listen)
	}
	admin, ok := flagValue(c.Args, "admin-listen")
	if !ok {
		admin = ":9090" // the binary's default
	}
	_, adminPortStr, err := net.SplitHostPort(admin)
	if err != nil {
		t.Fatalf("-admin-listen=%q: %v", admin, err)
	}
	adminPort, _ := strconv.Atoi(adminPortStr)
	pi := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "admin" })
	if pi < 0 || int(c.Ports[pi].ContainerPort) != adminPort {
		t.Errorf("container port \"admin\": got %v, want %d as in -admin-listen", c.Ports, adminPort)
	}

	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("%s probe: got none, want GET %s on the admin port", p.name, p.path)
		case p.probe.HTTPGet.Path != p.path:
			t.Errorf("%s probe path: got %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		case p.probe.HTTPGet.Port != intstr.FromString("admin") && p.probe.HTTPGet.Port != intstr.FromInt32(int32(adminPort)):
			t.Errorf("%s probe port: got %v, want the admin port", p.name, p.probe.HTTPGet.Port.String())
		}
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("resources.requests.%s: missing", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("resources.limits.%s: missing", r)
		}
	}

	checkMemoryLimit(t, c)

	sc := c.SecurityContext
	psc := pod.SecurityContext
	if sc == nil {
		t.Fatal("userproxy securityContext: missing")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Error("runAsNonRoot: not true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation: not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("capabilities.drop: does not include ALL")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && psc != nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile: not RuntimeDefault")
	}

	// Secrets arrive as files from a secret volume, never as flag values
	// or plain environment values.
	secretMounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		vi := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if vi >= 0 && pod.Volumes[vi].Secret != nil {
			if !m.ReadOnly {
				t.Errorf("secret mount %s: not readOnly", m.MountPath)
			}
			secretMounts[m.MountPath] = true
		}
	}
	for _, name := range []string{"key-secret", "upstream-password", "admin-token"} {
		if _, ok := flagValue(c.Args, name); ok {
			t.Errorf("-%s given as a value: want -%s-file", name, name)
		}
		path, ok := flagValue(c.Args, name+"-file")
		if !ok {
			t.Errorf("-%s-file: not given", name)
			continue
		}
		if !secretMounts[filepath.Dir(path)] {
			t.Errorf("-%s-file=%s: not in a mounted secret volume (mounts: %v)", name, path, secretMounts)
		}
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "TOKEN") {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("env %s: a secret not taken from a Secret", e.Name)
			}
		}
	}
}

// autoMemoryLimit is the binary's automatic soft memory limit with the
// default -l1-max-bytes (16 MiB): twice the tier plus 32 MiB, at least
// 64 MiB (internal/runtimetune.MemoryLimit).
const autoMemoryLimit = 64 << 20

// checkMemoryLimit checks that the Go runtime's soft memory limit leaves
// the container headroom: at most ~90% of its memory limit (README). A
// GOMEMLIMIT taken from limits.memory is 100% of it.
func checkMemoryLimit(t *testing.T, c corev1.Container) {
	t.Helper()
	limit := c.Resources.Limits.Memory().Value()
	set := false
	for _, e := range c.Env {
		switch {
		case e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			t.Errorf("GOMEMLIMIT from %s: the whole container limit, no headroom; want ~90%% of it, or none (the binary's automatic limit)",
				e.ValueFrom.ResourceFieldRef.Resource)
			set = true
		case e.Name == "GOMEMLIMIT", e.Name == "USERPROXY_MEMORY_LIMIT", e.Name == "USERPROXY_L1_MAX_BYTES":
			set = true // sized by hand: not checked here
		}
	}
	for _, name := range []string{"memory-limit", "l1-max-bytes"} {
		if _, ok := flagValue(c.Args, name); ok {
			set = true
		}
	}
	if !set && float64(autoMemoryLimit) > 0.9*float64(limit) {
		t.Errorf("memory limit %s: the binary's automatic soft limit, %d MiB, is over 90%% of it", c.Resources.Limits.Memory(), autoMemoryLimit>>20)
	}
}

// checkMonitoring checks that a ServiceMonitor or PodMonitor reaches the
// admin port of the sidecar's pods.
func checkMonitoring(t *testing.T, objs []object, d *appsv1.Deployment) {
	t.Helper()
	podLabels := labels.Set(d.Spec.Template.Labels)
	adminPort := userproxyContainer(t, d).Ports[0].ContainerPort
	monitors := 0
	for _, o := range objs {
		switch m := o.obj.(type) {
		case *serviceMonitor:
			monitors++
			sel := labels.SelectorFromSet(m.Spec.Selector.MatchLabels)
			var svc *corev1.Service
			for _, o2 := range objs {
				if s, ok := o2.obj.(*corev1.Service); ok && sel.Matches(labels.Set(s.Labels)) {
					if svc != nil {
						t.Errorf("ServiceMonitor %s selects more than one Service: %s and %s", m.Name, svc.Name, s.Name)
					}
					svc = s
				}
			}
			if svc == nil {
				t.Fatalf("ServiceMonitor %s selects no Service", m.Name)
			}
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				t.Errorf("Service %s does not select the sidecar's pods", svc.Name)
			}
			for _, ep := range m.Spec.Endpoints {
				pi := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
				if pi < 0 {
					t.Errorf("ServiceMonitor port %q: Service %s has no such port", ep.Port, svc.Name)
				} else if tp := svc.Spec.Ports[pi].TargetPort; tp != intstr.FromInt32(adminPort) {
					t.Errorf("Service %s port %s targets %s, want the admin port %d", svc.Name, ep.Port, tp.String(), adminPort)
				}
				if ep.Path != "/metrics" {
					t.Errorf("ServiceMonitor path: got %q, want /metrics", ep.Path)
				}
			}
		case *podMonitor:
			monitors++
			if !labels.SelectorFromSet(m.Spec.Selector.MatchLabels).Matches(podLabels) {
				t.Errorf("PodMonitor %s does not select the sidecar's pods", m.Name)
			}
		}
	}
	if monitors == 0 {
		t.Error("no ServiceMonitor or PodMonitor")
	}
}

// checkReferences checks that the ConfigMaps and Secrets the pod refers to
// are rendered too (wantSecret: the Secret is expected in the output; the
// base leaves it to the operator's secret manager).
func checkReferences(t *testing.T, objs []object, d *appsv1.Deployment, wantSecret bool) {
	t.Helper()
	have := map[string]bool{}
	for _, o := range objs {
		have[o.gvk+"/"+o.name] = true
	}
	c := userproxyContainer(t, d)
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && !have["v1 ConfigMap/"+ef.ConfigMapRef.Name] {
			t.Errorf("envFrom ConfigMap %q: not rendered", ef.ConfigMapRef.Name)
		}
	}
	if !wantSecret {
		return
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && !have["v1 Secret/"+v.Secret.SecretName] {
			t.Errorf("secret volume %q: Secret %q not rendered", v.Name, v.Secret.SecretName)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !have["v1 Secret/"+e.ValueFrom.SecretKeyRef.Name] {
			t.Errorf("env %s: Secret %q not rendered", e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
}
