package check

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// exported is what the bridge's Go sources say its /metrics carries: the
// metric names (true for a histogram), and the values its state and outcome
// labels take.
type exported struct {
	names    map[string]bool
	states   map[string]bool
	outcomes map[string]bool
}

// bridgeMetrics parses the bridge's non-test Go sources under root for the
// Name of every prometheus *Opts literal and prometheus.NewDesc call, the State constants and the
// outcome values (constants named outcome*, literals passed to outcome()).
func bridgeMetrics(t *testing.T, root string) exported {
	t.Helper()
	e := exported{names: map[string]bool{}, states: map[string]bool{}, outcomes: map[string]bool{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "deploy", "examples", "testdata", "node_modules", ".git":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
						if s, ok := stringLit(kv.Value); ok {
							e.names[s] = sel.Sel.Name == "HistogramOpts"
						}
					}
				}
			case *ast.ValueSpec:
				typ, _ := n.Type.(*ast.Ident)
				for i, name := range n.Names {
					if i >= len(n.Values) {
						break
					}
					s, ok := stringLit(n.Values[i])
					switch {
					case !ok:
					case typ != nil && typ.Name == "State":
						e.states[s] = true
					case strings.HasPrefix(name.Name, "outcome"):
						e.outcomes[s] = true
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				switch {
				case !ok || len(n.Args) == 0:
				case sel.Sel.Name == "outcome" && len(n.Args) == 1:
					if s, ok := stringLit(n.Args[0]); ok {
						e.outcomes[s] = true
					}
				case sel.Sel.Name == "NewDesc": // a collector of its own: prometheus.NewDesc("name", …)
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "prometheus" {
						if s, ok := stringLit(n.Args[0]); ok {
							e.names[s] = false
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func stringLit(x ast.Expr) (string, bool) {
	lit, ok := x.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var (
	metricName   = regexp.MustCompile(`\bbridge_[a-z0-9_]+\b`)
	labelMatcher = regexp.MustCompile(`\b(state|outcome)\s*(=|!=)\s*"([^"]*)"`)
)

// checkExpr returns what in a PromQL expression the bridge does not export: a
// metric name, or a value of its state or outcome label.
func (e exported) checkExpr(expr string) []string {
	var bad []string
	names := metricName.FindAllString(expr, -1)
	if len(names) == 0 {
		bad = append(bad, "no bridge metric")
	}
	for _, n := range names {
		if _, ok := e.names[n]; ok {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if base != n && e.names[base] {
			continue
		}
		bad = append(bad, "metric "+n)
	}
	for _, m := range labelMatcher.FindAllStringSubmatch(expr, -1) {
		known := e.states
		if m[1] == "outcome" {
			known = e.outcomes
		}
		if !known[m[3]] {
			bad = append(bad, fmt.Sprintf("%s value %q", m[1], m[3]))
		}
	}
	return bad
}

// TestMetricCheckCatchesUnknownNames: the check below refuses what the
// bridge does not export, and knows what it does.
func TestMetricCheckCatchesUnknownNames(t *testing.T) {
	t.Parallel()
	e := bridgeMetrics(t, "../..")
	for _, n := range []string{"bridge_connection_state", "bridge_lease_held", "bridge_nats_connected", "bridge_commands_total", "bridge_dispatch_total", "bridge_build_info"} {
		if _, ok := e.names[n]; !ok {
			t.Errorf("%s not found in the bridge's sources", n)
		}
	}
	for expr, want := range map[string]string{
		`rate(bridge_events_publish_total[5m])`:                    "metric bridge_events_publish_total",
		`bridge_connection_state{state="supersede"} == 1`:          `state value "supersede"`,
		`rate(bridge_dispatch_total{outcome="dead_letterd"}[5m])`:  `outcome value "dead_letterd"`,
		`rate(bridge_publish_latency_seconds_count[5m])`:           "",
		`rate(bridge_events_published_total_bucket[5m])`:           "metric bridge_events_published_total_bucket",
		`rate(bridge_commands_total{outcome="duplicate"}[5m]) > 0`: "",
	} {
		got := strings.Join(e.checkExpr(expr), "; ")
		if got != want {
			t.Errorf("%s: got %q, want %q", expr, got, want)
		}
	}
}

// TestPrometheusRule renders the chart's PrometheusRule, decodes it strictly
// into the Prometheus Operator's type and checks every alert: its expression
// uses only what the bridge exports, and its runbook_url points at a section
// of docs/runbook.md.
func TestPrometheusRule(t *testing.T) {
	t.Parallel()
	e := bridgeMetrics(t, "../..")
	sections := runbookSections(t, "../../docs/runbook.md")
	files, err := render(t, "prometheusRule: {enabled: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	o := decodeAll(t, files)
	if len(o.rules) != 1 {
		t.Fatalf("%d PrometheusRule objects, want 1", len(o.rules))
	}
	const base = "https://github.com/bridgeworks/bridge/blob/main/docs/runbook.md#"
	alerts := 0
	linked := map[string]bool{}
	for _, g := range o.rules[0].Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert (recording rules are not expected)", g.Name)
				continue
			}
			alerts++
			if bad := e.checkExpr(r.Expr.String()); len(bad) > 0 {
				t.Errorf("alert %s: %s: not exported by the bridge: %s", r.Alert, r.Expr.String(), strings.Join(bad, ", "))
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
			if strings.Contains(r.Annotations["summary"], "$labels") && !strings.Contains(r.Annotations["summary"], "{{ $labels.") {
				t.Errorf("alert %s: summary %q lost its template", r.Alert, r.Annotations["summary"])
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, base)
			if !ok || !sections[anchor] {
				t.Errorf("alert %s: runbook_url %q is not a section of docs/runbook.md", r.Alert, u)
			}
			linked[anchor] = true
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s: no severity label", r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts")
	}
	// The runbook's states that a metric shows each have an alert.
	for _, s := range []string{"connecting", "reconnecting", "standby", "superseded", "refused", "failed", "nats-errors"} {
		if !linked[s] {
			t.Errorf("no alert links the runbook's section %s", s)
		}
	}

	// Without the runbook's address the chart does not render.
	if _, err := render(t, "prometheusRule: {enabled: true, runbookURL: \"\"}\n"); err == nil || !strings.Contains(err.Error(), "prometheusRule.runbookURL") {
		t.Errorf("want an error naming prometheusRule.runbookURL, got %v", err)
	}
}

// runbookSections are the anchors of docs/runbook.md's second-level headings,
// as GitHub makes them.
func runbookSections(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		h, ok := strings.CutPrefix(line, "## ")
		if !ok {
			continue
		}
		var a strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				a.WriteRune(r)
			}
		}
		out[a.String()] = true
	}
	return out
}

// dashboard holds what of a Grafana dashboard's JSON the check reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestGrafanaDashboard checks deploy/grafana/bridge.json: JSON Grafana can
// import, every panel queries the dashboard's data source variable, and
// every query uses only what the bridge exports.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	e := bridgeMetrics(t, "../..")
	b, err := os.ReadFile("../grafana/bridge.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("bridge.json: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("the dashboard has no title or uid")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["connection"] {
		t.Errorf("variables %v, want datasource and connection", vars)
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not query the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				if bad := e.checkExpr(q.Expr); len(bad) > 0 {
					t.Errorf("panel %q query %s: %s: not exported by the bridge: %s", p.Title, q.RefID, q.Expr, strings.Join(bad, ", "))
				}
				for _, n := range metricName.FindAllString(q.Expr, -1) {
					used[strings.TrimSuffix(n, "_bucket")] = true
				}
			}
		}
	}
	walk(d.Panels)
	// The brief of the dashboard: these are all on it.
	var missing []string
	for _, n := range []string{"bridge_connection_state", "bridge_lease_held", "bridge_events_published_total", "bridge_publish_latency_seconds",
		"bridge_commands_total", "bridge_dispatch_total", "bridge_dispatch_round_trip_seconds", "bridge_connection_retry_timestamp_seconds", "bridge_nats_connected"} {
		if !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard shows none of %v", missing)
	}
}
