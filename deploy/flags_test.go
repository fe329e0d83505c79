package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// binaryFlags returns the flags `userproxy -h` lists.
func binaryFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(userproxyBin, "-h").Output()
	if err != nil {
		t.Fatalf("userproxy -h: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	// Sanity: a parser that finds nothing would let every manifest pass.
	for _, f := range []string{"listen", "admin-listen", "key-secret-file", "upstream-url"} {
		if !flags[f] {
			t.Fatalf("userproxy -h: found no -%s in:\n%s", f, out)
		}
	}
	return flags
}

// flagOfEnv maps an environment twin to its flag: USERPROXY_CACHE_TTL → cache-ttl.
func flagOfEnv(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "USERPROXY_")
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(strings.ToLower(rest), "_", "-"), true
}

// sidecarConfig is what the manifests tell userproxy: its args and its
// USERPROXY_* environment (env and envFrom ConfigMaps), values resolved
// from rendered ConfigMaps and Secrets where present.
type sidecarConfig struct {
	args []string
	env  map[string]string
}

func configOf(t *testing.T, objs []object, d *appsv1.Deployment) sidecarConfig {
	t.Helper()
	c := userproxyContainer(t, d)
	cfg := sidecarConfig{args: c.Args, env: map[string]string{}}
	find := func(gvk, name string) any {
		i := slices.IndexFunc(objs, func(o object) bool { return o.gvk == gvk && o.name == name })
		if i < 0 {
			return nil
		}
		return objs[i].obj
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only ConfigMaps are expected", ef)
		}
		cm, ok := find("v1 ConfigMap", ef.ConfigMapRef.Name).(*corev1.ConfigMap)
		if !ok {
			t.Fatalf("envFrom ConfigMap %s: not rendered", ef.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			cfg.env[ef.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			cfg.env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			v := "placeholder"
			if s, ok := find("v1 Secret", e.ValueFrom.SecretKeyRef.Name).(*corev1.Secret); ok {
				v = string(s.Data[e.ValueFrom.SecretKeyRef.Key]) + s.StringData[e.ValueFrom.SecretKeyRef.Key]
			}
			cfg.env[e.Name] = v
		}
	}
	return cfg
}

// TestManifestFlagsExist checks every flag the manifests pass, as an
// argument or as a USERPROXY_* environment twin, against the flags of the
// binary built from this tree.
func TestManifestFlagsExist(t *testing.T) {
	flags := binaryFlags(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			cfg := configOf(t, objs, sidecarDeployment(t, objs))
			for _, a := range cfg.args {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !flags[name] {
					t.Errorf("argument %q: the binary has no -%s", a, name)
				}
			}
			for k := range cfg.env {
				if name, ok := flagOfEnv(k); ok && !flags[name] {
					t.Errorf("environment %s: the binary has no -%s", k, name)
				}
			}
		})
	}
}

// TestManifestFlagsParse runs the binary with each rendering's arguments
// and environment (secret files replaced by temporary ones) and -version,
// which parses every flag, env twin and secret file and then exits without
// listening: a bad duration or a misspelt value fails here, not in a pod.
func TestManifestFlagsParse(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			cfg := configOf(t, objs, sidecarDeployment(t, objs))
			tmp := t.TempDir()
			var args []string
			for _, a := range cfg.args {
				name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if strings.HasSuffix(name, "-file") {
					value = filepath.Join(tmp, filepath.Base(value))
					if err := os.WriteFile(value, []byte("placeholder-secret-0123456789\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					a = "-" + name + "=" + value
				}
				args = append(args, a)
			}
			cmd := exec.Command(userproxyBin, append(args, "-version")...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no USERPROXY_* from this machine
			for k, v := range cfg.env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("userproxy %s -version with the manifest's environment: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

func TestFlagOfEnv(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"USERPROXY_CACHE_TTL", "cache-ttl", true},
		{"USERPROXY_KEY_SECRET_FILE", "key-secret-file", true},
		{"GOMEMLIMIT", "", false},
	}
	for _, tt := range tests {
		if got, ok := flagOfEnv(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("flagOfEnv(%q): got %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
