package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dashboardFile = "grafana/userproxy.json"

// grafanaPanel is the part of a Grafana panel the tests read.
type grafanaPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: not valid JSON: %v", dashboardFile, err)
	}
	return d
}

func allPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets and the metric selectors of template variable queries.
func dashboardExprs(t *testing.T, d grafanaDashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{} // expr → where
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				exprs[tg.Expr] = "panel " + p.Title
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		var obj struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil && json.Unmarshal(v.Query, &obj) == nil {
			q = obj.Query
		}
		switch m := labelValues.FindStringSubmatch(q); {
		case m != nil:
			exprs[m[1]] = "variable " + v.Name
		case strings.HasPrefix(q, "query_result(") && strings.HasSuffix(q, ")"):
			exprs[q[len("query_result("):len(q)-1]] = "variable " + v.Name
		default:
			t.Errorf("variable %s: query %q is not label_values(…) or query_result(…)", v.Name, q)
		}
	}
	return exprs
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard has no uid or title")
	}
	ids := map[int]bool{}
	var titles []string
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d: used twice", p.ID)
		}
		ids[p.ID] = true
		titles = append(titles, strings.ToLower(p.Title))
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is not the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 || p.Description == "" {
			t.Errorf("panel %q: want queries and a description", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.Expr == "" {
				t.Errorf("panel %q: target %q is empty or its refId repeats", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{"hit ratio", "requests by cache result", "requests by status", "latency percentiles",
		"latency heatmap", "upstream latency", "upstream calls", "upstream error", "circuit breaker state", "redis",
		"degraded", "coalesced", "stale", "fill leases", "fleet breaker", "topology reloads"} {
		found := false
		for _, title := range titles {
			found = found || strings.Contains(title, want)
		}
		if !found {
			t.Errorf("no panel about %q", want)
		}
	}
}

// TestDashboardMetricsAreExported parses every PromQL expression of the
// dashboard and checks each metric it names is exported by a running
// userproxy (after traffic that creates every labelled series) or recorded
// by deploy/prometheus/userproxy.rules.yml.
func TestDashboardMetricsAreExported(t *testing.T) {
	dash := loadDashboard(t)
	exprs := dashboardExprs(t, dash)
	if len(exprs) < 20 {
		t.Fatalf("found %d expressions in %s, want the dashboard's ~25: is the parser missing some?", len(exprs), dashboardFile)
	}
	recorded := recordingRules(t)
	// On a redis-server of the test's own, so the Redis and in-process-tier
	// panels' metrics exist too.
	d := startDemo(t, "-redis-url="+startRedis(t), "-key-secret=dashboard-test-secret-0123456789")
	d.traffic(t)
	exported := d.scrape(t)
	for _, name := range []string{"userproxy_requests_total", "userproxy_build_info"} {
		if !exported[name] {
			t.Fatalf("scrape lacks %s: the scrape or the traffic is broken", name)
		}
	}
	used := 0
	for expr, where := range exprs {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, expr)
		}
		for _, n := range names {
			used++
			if !exported[n] && !recorded[n] {
				t.Errorf("%s: %s is neither exported by userproxy nor a recording rule (expr %q)", where, n, expr)
			}
		}
	}
	t.Logf("%d expressions, %d metric references checked", len(exprs), used)
}
