package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"

	"github.com/pgpush/pgpush/web"
)

// grafanaDashboard is the dashboard the repository ships (SPEC §6).
const grafanaDashboard = "../../docs/grafana/pgpush.json"

// TestGrafanaDashboardMetrics starts a real server, scrapes /metrics, and
// checks that every metric the dashboard's PromQL names is exposed, as a
// series name (so a histogram counts as its _bucket, _sum and _count
// series), and that every label it groups or matches by exists on those
// series or is one Prometheus adds when scraping (instance, job).
func TestGrafanaDashboardMetrics(t *testing.T) {
	t.Parallel()
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("dashboard has %d PromQL expressions, want its panels' (at least 10)", len(exprs))
	}

	_, url, password := newShop(t)
	srv := startServer(t, url, nil)
	// pgpush_subscriptions has a series only while something is subscribed.
	c := srv.connect(t, srv.admin(t, password))
	c.subscribe("order_changes")
	series := scrapeSeries(t, srv.base+"/metrics")

	metricName := regexp.MustCompile(`\b(?:pgpush|process|go)_[a-zA-Z0-9_:]*`)
	groupings := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchers := regexp.MustCompile(`\{([^}]*)\}`)
	matcherLabel := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	used := map[string]bool{}
	for _, expr := range exprs {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("expression %q names no pgpush, process or go metric", expr)
		}
		labels := map[string]bool{"instance": true, "job": true}
		for _, name := range names {
			used[name] = true
			got, ok := series[name]
			if !ok {
				t.Errorf("expression %q: /metrics has no series %s", expr, name)
				continue
			}
			for l := range got {
				labels[l] = true
			}
		}
		var wanted []string
		for _, m := range groupings.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" {
					wanted = append(wanted, l)
				}
			}
		}
		for _, m := range matchers.FindAllStringSubmatch(expr, -1) {
			for _, l := range matcherLabel.FindAllStringSubmatch(m[1], -1) {
				wanted = append(wanted, l[1])
			}
		}
		for _, l := range wanted {
			if !labels[l] {
				t.Errorf("expression %q uses label %q, which its series do not have", expr, l)
			}
		}
	}
	// Each of these is what an operator watches; the dashboard must chart it.
	for _, name := range []string{
		"pgpush_events_received_total", "pgpush_events_delivered_total",
		"pgpush_event_latency_seconds_bucket", "pgpush_listener_lag_seconds",
		"pgpush_connected_sockets", "pgpush_listener_reconnects_total",
		"pgpush_events_dropped_total", "pgpush_subscriptions",
	} {
		if !used[name] {
			t.Errorf("dashboard does not chart %s", name)
		}
	}
	for name := range series {
		if strings.HasPrefix(name, "pgpush_") && !used[name] && !used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")+"_bucket"] {
			t.Logf("note: %s is exposed but not charted", name)
		}
	}
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets (rows included) and query variables. It also checks the shape
// Grafana needs: unique panel ids, a datasource and targets on each panel.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		ID         int              `json:"id"`
		Type       string           `json:"type"`
		Title      string           `json:"title"`
		Datasource *json.RawMessage `json:"datasource"`
		Targets    []target         `json:"targets"`
		Panels     []panel          `json:"panels"`
	}
	var dash struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("dashboard title %q uid %q, want both", dash.Title, dash.UID)
	}
	var exprs []string
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || len(p.Targets) == 0 {
				t.Errorf("panel %q has no datasource or no targets", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has a target without expr", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Errorf("variable query %s is neither a string nor {query}", v.Query)
			}
			q.Query = s
		}
		exprs = append(exprs, q.Query)
	}
	return exprs
}

// scrapeSeries reads the Prometheus text format and returns each series
// name with the label names seen on it.
func scrapeSeries(t *testing.T, url string) map[string]map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
	series := map[string]map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			t.Fatalf("unparsable /metrics line %q", line)
		}
		name := line[:end]
		if series[name] == nil {
			series[name] = map[string]bool{}
		}
		if line[end] == '{' {
			closing := strings.LastIndexByte(line, '}')
			for _, m := range label.FindAllStringSubmatch(line[end+1:max(closing, end+1)], -1) {
				series[name][m[1]] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series
}

// TestGrafanaComposeProfile: the optional monitoring profile runs
// Prometheus on pgpush's /metrics and Grafana with the dashboard, from
// files that exist in the repository.
func TestGrafanaComposeProfile(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{"../../compose.yaml"}, cli.WithWorkingDirectory("../.."),
		cli.WithName("pgpush"), cli.WithProfiles([]string{"monitoring"}))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load compose.yaml with the monitoring profile: %v", err)
	}
	mounts := map[string]string{} // container path -> host path
	for _, name := range []string{"prometheus", "grafana"} {
		svc, err := project.GetService(name)
		if err != nil {
			t.Fatalf("monitoring profile: %v", err)
		}
		if !slices.Contains(svc.Profiles, "monitoring") {
			t.Errorf("%s profiles = %v, want only with --profile monitoring", name, svc.Profiles)
		}
		for _, v := range svc.Volumes {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
			mounts[v.Target] = v.Source
		}
	}
	abs, err := filepath.Abs(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	if got := mounts["/var/lib/grafana/dashboards/pgpush.json"]; got != abs {
		t.Errorf("grafana mounts %q as the dashboard, want %s", got, abs)
	}
	prom, err := os.ReadFile(mounts["/etc/prometheus/prometheus.yml"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), `targets: ["pgpush:3000"]`) || !strings.Contains(string(prom), "metrics_path: /metrics") {
		t.Errorf("prometheus.yml does not scrape pgpush:3000/metrics:\n%s", prom)
	}
	provisioned, err := os.ReadFile(filepath.Join(mounts["/etc/grafana/provisioning"], "dashboards", "pgpush.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(provisioned), "path: /var/lib/grafana/dashboards") {
		t.Errorf("dashboard provisioning does not load /var/lib/grafana/dashboards:\n%s", provisioned)
	}
	// Without the profile, plain `docker compose up` starts neither.
	plain, err := cli.NewProjectOptions([]string{"../../compose.yaml"}, cli.WithWorkingDirectory("../.."), cli.WithName("pgpush"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plain.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prometheus", "grafana"} {
		if _, err := p.GetService(name); err == nil {
			t.Errorf("%s runs without --profile monitoring", name)
		}
	}
}

// TestServesTypeScriptDeclarations: the real server answers GET
// /pgpush.d.ts with the embedded declarations.
func TestServesTypeScriptDeclarations(t *testing.T) {
	t.Parallel()
	_, url, _ := newShop(t)
	srv := startServer(t, url, nil)
	resp, err := http.Get(srv.base + "/pgpush.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want, err := fs.ReadFile(web.Files(), "pgpush.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != string(want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/typescript") {
		t.Errorf("GET /pgpush.d.ts: status %d, %s, %d bytes; want 200, application/typescript, the %d embedded bytes",
			resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(want))
	}
}
