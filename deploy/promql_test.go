package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promqlKeywords are identifiers that are not metric names even when no
// parenthesis follows them: binary operators, modifiers, aggregation
// operators (which may be followed by "by (…)" before their argument).
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// metricNames returns the metric names (recording rule names included) an
// expression selects, in order of first appearance. It is a small lexer,
// not a PromQL parser: it skips strings, label matchers, ranges, Grafana
// variables, numbers and durations, function calls and label lists, and
// what is left is metric names.
func metricNames(expr string) ([]string, error) {
	var names []string
	i := 0
	skipSpace := func(j int) int {
		for j < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[j])) {
			j++
		}
		return j
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{' || c == '[':
			j, err := skipBlock(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$': // Grafana variable: $name, ${name}, $__rate_interval
			i++
			if i < len(expr) && expr[i] == '{' {
				end := strings.IndexByte(expr[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += end + 1
				continue
			}
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.': // numbers and durations: 0.5, 1e3, 5m, 1h30m
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == ':') {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case labelListKeywords[word] && next < len(expr) && expr[next] == '(':
				end := strings.IndexByte(expr[next:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unterminated label list after %s", word)
				}
				j = next + end + 1
			case promqlKeywords[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(': // a function call
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) && c != ':' || c >= '0' && c <= '9' }

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}

// skipBlock returns the index after the {…} or […] block starting at i,
// skipping strings inside it.
func skipBlock(s string, i int) (int, error) {
	closer := byte('}')
	if s[i] == '[' {
		closer = ']'
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '"', '\'', '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k - 1
		case closer:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c at %d", s[i], i)
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`sum by (job, le) (rate(userproxy_request_duration_seconds_bucket{job=~"$job",cache!="bypass"}[$__rate_interval]))`,
			[]string{"userproxy_request_duration_seconds_bucket"}},
		{`histogram_quantile(0.99, sum without (instance) (rate(a_bucket[5m])))`, []string{"a_bucket"}},
		{`job:userproxy_cache_hit_ratio:ratio_rate5m{job=~"$job"} < 0.5 * job:x:avg1d and on (job) b > 1`,
			[]string{"job:userproxy_cache_hit_ratio:ratio_rate5m", "job:x:avg1d", "b"}},
		{`count(x{l="a}b{c"} >= 1) or vector(0)`, []string{"x"}},
		{`rate(a[5m] offset 1h) / ignoring(code) group_left(cache) c unless bool d`, []string{"a", "c", "d"}},
		{`sum(rate(m[${__rate_interval}])) * 1e3 + 0.5`, []string{"m"}},
		{`topk(5, m) or count_values("v", n)`, []string{"m", "n"}},
		{`1 - (a / a)`, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := metricNames(tt.expr)
			if err != nil {
				t.Fatalf("metricNames: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	for _, bad := range []string{`a{b="c}`, `a{b="c"`, `rate(a[5m)`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q): got no error, want one", bad)
		}
	}
}
