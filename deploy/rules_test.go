package deploy

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const (
	rulesFile     = "prometheus/userproxy.rules.yml"
	ruleTestsFile = "prometheus/userproxy.rules.test.yml"
	runbookFile   = "../docs/runbook.md"
	runbookURL    = "https://github.com/userproxy/userproxy/blob/main/docs/runbook.md#"
)

// ruleFile is a Prometheus rule file, decoded strictly: a misspelt key
// (say "annotation") fails here even where Prometheus would ignore it.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := strictUnmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []rule
	for _, g := range rf.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return rules
}

// recordingRules returns the names the rules file records.
func recordingRules(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Record != "" {
			names[r.Record] = true
		}
	}
	return names
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestAlertsAreDocumented(t *testing.T) {
	runbook, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} (.+)$`).FindAllStringSubmatch(string(runbook), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	var alerts []string
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		alerts = append(alerts, r.Alert)
		t.Run(r.Alert, func(t *testing.T) {
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("annotation %s: missing", a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL)
			if !ok {
				t.Errorf("runbook_url %q: want %s<anchor>", r.Annotations["runbook_url"], runbookURL)
			} else if !anchors[anchor] {
				t.Errorf("runbook_url anchor #%s: no such heading in docs/runbook.md", anchor)
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("runbook_url anchor #%s: want #%s, the alert's own section", anchor, strings.ToLower(r.Alert))
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("severity label: got %q, want critical or warning", s)
			}
			if r.For == "" {
				t.Error("no for: one bad evaluation would page")
			}
		})
	}
	if len(alerts) < 6 {
		t.Errorf("got %d alerts, want at least the six in docs/runbook.md", len(alerts))
	}
	// Every alert is unit-tested by promtool.
	tests, err := os.ReadFile(ruleTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !strings.Contains(string(tests), "alertname: "+a+"\n") {
			t.Errorf("%s: no alert_rule_test in %s", a, ruleTestsFile)
		}
	}
}

func TestRecordingRuleNames(t *testing.T) {
	// level:metric:operations, as the Prometheus naming practices ask.
	re := regexp.MustCompile(`^[a-z_]+:userproxy_[a-z0-9_]+:[a-z0-9_]+$`)
	for _, r := range loadRules(t) {
		if r.Record != "" && !re.MatchString(r.Record) {
			t.Errorf("recording rule %q: want level:userproxy_metric:operations", r.Record)
		}
	}
}

// TestRuleMetricsAreExported checks every metric a rule reads against a
// running userproxy, so a renamed metric breaks this test instead of an
// alert going silent.
//
// The demo runs on a redis-server of the test's own, so the Redis and
// in-process-tier metrics exist too.
func TestRuleMetricsAreExported(t *testing.T) {
	d := startDemo(t, "-redis-url="+startRedis(t), "-key-secret=rules-test-secret-0123456789")
	d.traffic(t)
	exported := d.scrape(t)
	recorded := map[string]bool{}
	for _, r := range loadRules(t) {
		names, err := metricNames(r.Expr)
		if err != nil {
			t.Errorf("rule %s%s: %v", r.Record, r.Alert, err)
			continue
		}
		for _, n := range names {
			if !exported[n] && !recorded[n] {
				t.Errorf("rule %s%s reads %s: not exported by userproxy, nor recorded by an earlier rule", r.Record, r.Alert, n)
			}
		}
		if r.Record != "" {
			recorded[r.Record] = true
		}
	}
}

// promTool returns the path of a Prometheus binary (prometheus, promtool):
// $USERPROXY_TEST_<NAME> or PATH. Missing, the test skips, unless CI is set:
// then it fails, so CI cannot pass by not running it.
func promTool(t *testing.T, name string) string {
	t.Helper()
	if p := os.Getenv("USERPROXY_TEST_" + strings.ToUpper(name)); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found and CI is set: install it from Debian's packages (see .ci/run)", name)
	}
	t.Skipf("%s not found: install it from Debian's packages to run this test", name)
	return ""
}

func TestPromtool(t *testing.T) {
	promtool := promTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", ruleTestsFile},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
