package deploy

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStaticBinary checks that deploy/build.sh — the build the Dockerfile
// runs — gives a static binary: no ELF interpreter, no dynamic section, no
// shared libraries, built without cgo and with -trimpath. It is what lets
// the image be distroless (or scratch) with no libc.
func TestStaticBinary(t *testing.T) {
	f, err := elf.Open(userproxyBin)
	if err != nil {
		t.Fatalf("opening the built binary as ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			t.Error("ELF has a PT_INTERP program header: it needs a dynamic loader")
		case elf.PT_DYNAMIC:
			t.Error("ELF has a PT_DYNAMIC program header: it is dynamically linked")
		}
	}
	for _, name := range []string{".interp", ".dynamic"} {
		if f.Section(name) != nil {
			t.Errorf("ELF has a %s section", name)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported shared libraries: got %v (err %v), want none", libs, err)
	}

	// What `go version -m` prints, read the same way.
	bi, err := buildinfo.ReadFile(userproxyBin)
	if err != nil {
		t.Fatalf("reading build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("build setting %s: got %q, want %q", k, settings[k], want)
		}
	}
	if bi.Path != "github.com/userproxy/userproxy/cmd/userproxy" {
		t.Errorf("main package: got %q, want github.com/userproxy/userproxy/cmd/userproxy", bi.Path)
	}

	// -trimpath: the build machine's paths are not in the binary.
	repo, _ := filepath.Abs("..")
	b, err := os.ReadFile(userproxyBin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(repo+"/")) {
		t.Errorf("binary contains the build path %s", repo)
	}

	out, err := exec.Command(userproxyBin, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), testVersion) || !strings.Contains(string(out), "deadbeef") {
		t.Errorf("userproxy -version: got %q (err %v), want the stamped %s and revision deadbeef", out, err, testVersion)
	}
}

// TestDockerfile checks the image recipe without a Docker engine: the
// build stage runs deploy/build.sh with the module's Go version, and the
// final stage is distroless or scratch, non-root, shell-free.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		from  string
		lines []string
	}
	var stages []stage
	var args []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if from, ok := strings.CutPrefix(line, "FROM "); ok {
			stages = append(stages, stage{from: from})
			continue
		}
		if len(stages) == 0 {
			args = append(args, line)
			continue
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
	}
	if len(stages) < 2 {
		t.Fatalf("got %d stages, want a multi-stage build", len(stages))
	}

	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if goLine == nil {
		t.Fatal("../go.mod has no go line")
	}
	wantArg := "ARG GO_VERSION=" + string(goLine[1]) + "."
	if !containsPrefix(args, wantArg) {
		t.Errorf("global args %v: want one starting %q (the main module's Go version)", args, wantArg)
	}
	build := stages[0]
	if !strings.HasPrefix(build.from, "golang:${GO_VERSION}") || !strings.HasSuffix(build.from, " AS build") {
		t.Errorf("first stage FROM %q: want golang:${GO_VERSION} … AS build", build.from)
	}
	body := strings.Join(build.lines, "\n")
	if !strings.Contains(body, "deploy/build.sh /out/userproxy") {
		t.Error("build stage does not run deploy/build.sh: the image would not ship the binary these tests check")
	}

	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %q: want distroless/static (CA certificates, no shell) or scratch", final.from)
	}
	var user, entry string
	for _, l := range final.lines {
		switch {
		case strings.HasPrefix(l, "USER "):
			user = strings.TrimPrefix(l, "USER ")
		case strings.HasPrefix(l, "ENTRYPOINT "):
			entry = strings.TrimPrefix(l, "ENTRYPOINT ")
		case strings.HasPrefix(l, "RUN ") || strings.HasPrefix(l, "SHELL "):
			t.Errorf("final stage %q: the runtime image has no shell", l)
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(user) {
		t.Errorf("USER %q: want a numeric non-root uid:gid, so runAsNonRoot can be verified", user)
	}
	if entry != `["/userproxy"]` {
		t.Errorf("ENTRYPOINT %s: want the exec form [\"/userproxy\"] (no shell)", entry)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestDockerignore checks that the build context keeps what the image
// build needs and leaves out the rest.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	ig := parseDockerignore(string(b))
	for _, p := range []string{"go.mod", "go.sum", "deploy/build.sh", "cmd/userproxy/main.go", "proxy/handler.go", "upstream/fakeupstream/handler.go"} {
		if ig.excludes(p) {
			t.Errorf("%s: excluded from the build context, but the image build needs it", p)
		}
	}
	for _, p := range []string{".git/HEAD", "deploy/kubernetes/base/deployment.yaml", "deploy/go.mod", "docs/runbook.md", "proxy/handler_test.go", "cache/testdata/fuzz/x", "README.md", "userproxy"} {
		if !ig.excludes(p) {
			t.Errorf("%s: in the build context, want it excluded", p)
		}
	}
	// Every non-test Go file of the main module must reach the build.
	err = filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", path)
		if d.IsDir() && (rel == "deploy" || rel == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") && ig.excludes(filepath.ToSlash(rel)) {
			t.Errorf("%s: excluded from the build context", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dockerignore is a parsed .dockerignore: later patterns win, "!" re-includes.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func parseDockerignore(s string) dockerignore {
	var ig dockerignore
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		// A pattern naming a directory excludes everything below it.
		re.WriteString("(/.*)?$")
		ig = append(ig, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), neg})
	}
	return ig
}

func (ig dockerignore) excludes(path string) bool {
	excluded := false
	for _, p := range ig {
		if p.re.MatchString(path) {
			excluded = !p.negate
		}
	}
	return excluded
}
