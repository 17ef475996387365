// Package metrics_test proves sockreap's metrics end to end: real runc
// containers stop with the hooks installed (drained with an orphan, a
// shared namespace skipped, opted out, a hook over its budget, a hook the
// runtime killed), node_exporter's textfile collector reads the hooks'
// sockreap.prom, a real Prometheus scrapes node_exporter, and PromQL
// queries over Prometheus's HTTP API return exactly the expected counts.
// promtool checks the exposition and the alerting rules.
package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
	"github.com/sockreap/sockreap/internal/pin/pintest"
	"github.com/sockreap/sockreap/internal/testbin"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { testbin.Main(m, "sockreap-hook") }

func hookBin() string { return testbin.Path("sockreap-hook") }

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it: apt-get install prometheus prometheus-node-exporter runc busybox-static)", tool)
		}
	}
}

func busybox(t *testing.T) string {
	p, err := exec.LookPath("busybox")
	if err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			if exec.Command("ldd", p).Run() != nil { // static
				return p
			}
		}
	}
	t.Skip("needs a static busybox (apt-get install busybox-static)")
	return ""
}

// node is the hooks' configuration: one state directory, log and metrics
// directory for every container of the test.
type node struct {
	dir, stateDir, logFile, metricsDir string
}

func newNode(t *testing.T) *node {
	dir := t.TempDir()
	n := &node{dir: dir, stateDir: filepath.Join(dir, "state"), logFile: filepath.Join(dir, "hook.log"), metricsDir: filepath.Join(dir, "textfile")}
	if err := os.Mkdir(n.metricsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pintest.Cleanup(t, n.stateDir)
	return n
}

// config writes a configuration file for the hooks with the given budget.
func (n *node) config(t *testing.T, budget string) string {
	path := filepath.Join(n.dir, "config-"+budget+".toml")
	body := fmt.Sprintf("state_dir = %q\nlog_file = %q\nmetrics_dir = %q\nbudget = %q\n", n.stateDir, n.logFile, n.metricsDir, budget)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type container struct {
	id, bundle string
	pid        int
}

// newContainer creates (runc create) a busybox container running args
// with the hooks installed by configure runc.
func (n *node) newContainer(t *testing.T, args []string, netnsPath string, annotations map[string]string, config string, timeout int) *container {
	t.Helper()
	dir := t.TempDir()
	busybox(t) // skips without a static one
	ocitest.Rootfs(t, filepath.Join(dir, "rootfs"))
	ocitest.Spec(t, dir, args...)
	ocitest.Edit(t, dir, func(doc map[string]any) {
		if annotations != nil {
			doc["annotations"] = annotations
		}
		if netnsPath != "" {
			ocitest.SetNetnsPath(doc, netnsPath)
		}
	})
	nettest.Run(t, hookBin(), "configure", "runc", "--bundle", dir, "--hook", hookBin(), "--config", config, "--timeout", strconv.Itoa(timeout))
	if timeout == 1 {
		// The hook is not told its OCI timeout, so it keeps its own
		// budget and the runtime kills it first. runc reads the hooks
		// at create.
		ocitest.Edit(t, dir, func(doc map[string]any) {
			for _, h := range doc["hooks"].(map[string]any)["poststop"].([]any) {
				m := h.(map[string]any)
				var args []any
				for _, a := range m["args"].([]any) {
					if !strings.HasPrefix(a.(string), "--oci-timeout") {
						args = append(args, a)
					}
				}
				m["args"] = args
			}
		})
	}
	c := &container{id: nettest.Unique("srm"), bundle: dir}
	t.Cleanup(func() { _ = exec.Command("runc", "delete", "--force", c.id).Run() })
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("runc", "create", "--bundle", dir, c.id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("runc create: %v\n%s", err, b)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	_ = json.Unmarshal([]byte(nettest.Run(t, "runc", "state", c.id)), &st)
	c.pid = st.Pid
	return c
}

func (c *container) netns() string { return "/proc/" + strconv.Itoa(c.pid) + "/ns/net" }

// stop kills the container's process and waits for runc to see it stopped.
func (c *container) stop(t *testing.T) {
	t.Helper()
	nettest.Run(t, "runc", "kill", c.id, "KILL")
	if nettest.WaitUntil(20*time.Second, func() bool {
		out, _ := exec.Command("runc", "state", c.id).Output()
		return strings.Contains(string(out), `"stopped"`)
	}) < 0 {
		t.Fatalf("container %s did not stop", c.id)
	}
}

// holdPinLock takes the lock a hook takes on the container's pin, so that
// its poststop waits; the returned func lets go.
func (n *node) holdPinLock(t *testing.T, c *container) func() {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(n.stateDir, "meta", "*"+c.id+"*.lock"))
	if len(locks) == 0 {
		t.Fatalf("no pin lock of %s in %s", c.id, n.stateDir)
	}
	var fs []*os.File
	for _, l := range locks {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return func() {
		for _, f := range fs {
			f.Close()
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a daemon until the test ends.
func start(t *testing.T, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, tail(string(b), 3000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// sample is one series of an instant query's result.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// instant runs an instant PromQL query and returns its series; the error
// is the request's or Prometheus's own (a query that does not parse, an
// unknown function).
func instant(promURL, q string) ([]sample, error) {
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

// query runs an instant PromQL query and returns the single sample's
// value, or ok false when the result is empty.
func query(t *testing.T, promURL, q string) (float64, bool) {
	t.Helper()
	rs, err := instant(promURL, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		return 0, false
	}
	v, _ := strconv.ParseFloat(rs[0].Value[1].(string), 64)
	return v, true
}

const peerPort = 7781

func TestScrapeAfterContainerStops(t *testing.T) {
	nettest.RequireRoot(t)
	need(t, "runc", "prometheus", "promtool", "prometheus-node-exporter", "nsenter")
	n := newNode(t)
	normal := n.config(t, "2s")

	// node_exporter's textfile collector and a Prometheus scraping it
	// from the start (so that increase() sees the counters go up), each
	// on its own loopback port with its own data.
	nePort, promPort := freePort(t), freePort(t)
	start(t, "prometheus-node-exporter", "--web.listen-address=127.0.0.1:"+strconv.Itoa(nePort),
		"--collector.disable-defaults", "--collector.textfile", "--collector.textfile.directory="+n.metricsDir)
	rules, _ := filepath.Abs("../../deploy/prometheus/sockreap-alerts.yml")
	cfg := filepath.Join(n.dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, rules, nePort)), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, "prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(n.dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(promPort))
	promURL := "http://127.0.0.1:" + strconv.Itoa(promPort)

	// The zeros first (stats writes them), scraped before any event, as
	// on a node where sockreap ran before: increase() counts from there.
	nettest.Run(t, hookBin(), "stats", "--metrics-dir", n.metricsDir)
	if nettest.WaitUntil(60*time.Second, func() bool {
		_, err := instant(promURL, "up")
		if err != nil {
			return false
		}
		v, ok := query(t, promURL, `sockreap_drains_total{frontend="hook",outcome="budget-exceeded"}`)
		return ok && v == 0
	}) < 0 {
		t.Fatal("Prometheus never scraped sockreap's initial figures from node_exporter")
	}

	// 1. Drained with an orphan: the container's process fills a
	// connection to a peer that does not read, then dies.
	peer := nettest.NewNetns(t)
	a := n.newContainer(t, []string{"/bin/busybox", "sh", "-c", fmt.Sprintf("exec /bin/busybox nc 192.0.2.2 %d </dev/zero", peerPort)}, "", nil, normal, 10)
	peerEnd, ctrEnd := nettest.Unique("srp"), nettest.Unique("src")
	nettest.Run(t, "ip", "-n", peer.Name, "link", "add", peerEnd, "type", "veth", "peer", "name", ctrEnd, "netns", strconv.Itoa(a.pid))
	nettest.Run(t, "ip", "-n", peer.Name, "addr", "add", "192.0.2.2/30", "dev", peerEnd)
	nettest.Run(t, "ip", "-n", peer.Name, "link", "set", peerEnd, "up")
	nettest.Run(t, "nsenter", "--net="+a.netns(), "ip", "addr", "add", "192.0.2.1/30", "dev", ctrEnd)
	nettest.Run(t, "nsenter", "--net="+a.netns(), "ip", "link", "set", ctrEnd, "up")
	peer.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("192.0.2.2:%d", peerPort)), 8, 4096)
	nettest.Run(t, "runc", "start", a.id)
	if nettest.WaitUntil(20*time.Second, func() bool {
		out := nettest.Run(t, "nsenter", "--net="+a.netns(), "ss", "-tnH", "state", "established")
		f := strings.Fields(out)
		return len(f) >= 2 && f[1] != "0"
	}) < 0 {
		t.Fatal("the sender never got stuck")
	}
	a.stop(t)
	nettest.Run(t, "runc", "delete", a.id)

	// 2. A shared namespace: b joins owner's; b's poststop skips it, the
	// owner's drains it (nothing left there).
	owner := n.newContainer(t, []string{"/bin/busybox", "sleep", "600"}, "", nil, normal, 10)
	nettest.Run(t, "runc", "start", owner.id)
	b := n.newContainer(t, []string{"/bin/busybox", "sleep", "600"}, owner.netns(), nil, normal, 10)
	nettest.Run(t, "runc", "start", b.id)
	b.stop(t)
	nettest.Run(t, "runc", "delete", b.id)
	owner.stop(t)
	nettest.Run(t, "runc", "delete", owner.id)

	// 3. Opted out by annotation.
	c := n.newContainer(t, []string{"/bin/busybox", "true"}, "", map[string]string{"io.sockreap.drain": "false"}, normal, 10)
	c.stop(t)
	nettest.Run(t, "runc", "delete", c.id)

	// 4. Over its budget: the poststop waits for the pin's lock and
	// gives up at its 300 ms budget.
	d := n.newContainer(t, []string{"/bin/busybox", "sleep", "600"}, "", nil, n.config(t, "300ms"), 10)
	nettest.Run(t, "runc", "start", d.id)
	d.stop(t)
	release := n.holdPinLock(t, d)
	nettest.Run(t, "runc", "delete", d.id)
	release()

	// 5. Killed by the runtime: a 10 s budget the hook does not know to
	// keep inside its OCI timeout of 1 s (no --oci-timeout), the pin's
	// lock held: runc kills the hook.
	e := n.newContainer(t, []string{"/bin/busybox", "sleep", "600"}, "", nil, n.config(t, "10s"), 1)
	nettest.Run(t, "runc", "start", e.id)
	e.stop(t)
	release = n.holdPinLock(t, e)
	out, err := exec.Command("runc", "delete", e.id).CombinedOutput()
	release()
	t.Logf("runc delete of the container whose hook was killed: %v %s", err, bytes.TrimSpace(out))
	// gc releases the pins the last two left (draining their empty
	// namespaces), and an operator drains a namespace by hand.
	gc := nettest.Run(t, hookBin(), "gc", "--config", normal, "--min-age", "0s")
	t.Logf("sockreap-hook gc:\n%s", gc)
	x := nettest.NewNetns(t)
	nettest.Run(t, hookBin(), "drain", "--netns", x.Path, "--config", normal)

	// stats reads (and so completes) the counters: the killed hook is
	// counted there.
	stats := nettest.Run(t, hookBin(), "stats", "--metrics-dir", n.metricsDir)
	t.Logf("sockreap-hook stats:\n%s", stats)
	prom := filepath.Join(n.metricsDir, metrics.PromFile)
	exposition, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", prom, exposition)
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = bytes.NewReader(exposition)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if out, err := exec.Command("promtool", "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}

	// Wait for a scrape of the final figures: the last events (the
	// killed hook counted by stats, the CLI drain).
	if nettest.WaitUntil(60*time.Second, func() bool {
		resp, err := http.Get(promURL + "/api/v1/query?query=up")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false // starting
		}
		v, ok := query(t, promURL, `sum(sockreap_drains_total)`)
		return ok && v == 9
	}) < 0 {
		t.Fatal("Prometheus never scraped the final sockreap_drains_total from node_exporter")
	}

	for _, c := range []struct {
		q    string
		want float64
	}{
		{`sockreap_drains_total{frontend="hook",outcome="drained"}`, 2},
		{`sockreap_drains_total{frontend="hook",outcome="skipped-shared"}`, 1},
		{`sockreap_drains_total{frontend="hook",outcome="opted-out"}`, 1},
		{`sockreap_drains_total{frontend="hook",outcome="budget-exceeded"}`, 1},
		{`sockreap_drains_total{frontend="hook",outcome="killed"}`, 1},
		{`sockreap_drains_total{frontend="hook",outcome="failed"}`, 0},
		{`sum(sockreap_drains_total{frontend="hook"})`, 6},
		{`sockreap_hook_failures_total{stage="poststop"}`, 2},
		{`sockreap_hook_failures_total{stage="createRuntime"}`, 0},
		{`sockreap_sockets_total{action="found",protocol="tcp",state="closing",owner="orphan"}`, 1},
		{`sockreap_sockets_total{action="destroyed",protocol="tcp",state="closing",owner="orphan"}`, 1},
		{`sum(sockreap_sockets_total{action="remaining"}) or vector(0)`, 0},
		{`sockreap_drain_duration_seconds_count{frontend="hook"}`, 2},
		{`sockreap_drain_duration_seconds_count{frontend="gc"}`, 2},
		{`sockreap_stage_duration_seconds_count{stage="poststop"}`, 5}, // the killed hook never measured itself
		{`sockreap_hook_runs_total{stage="createRuntime",outcome="pinned"}`, 5},
		{`sockreap_hook_runs_total{stage="createRuntime",outcome="opted-out"}`, 1},
		{`sockreap_drains_total{frontend="gc",outcome="drained"}`, 2},
		{`sockreap_gc_releases_total`, 2},
		{`sockreap_pins`, 0},
		{`sockreap_pins_stale`, 0},
		{`count(sockreap_gc_last_run_timestamp_seconds > 0)`, 1},
		{`count(sockreap_kernel_info == 1)`, 1},
		{`count(sockreap_dying_netns{bound="upper"} >= 0)`, 1},
		{`sockreap_drains_total{frontend="cli",outcome="drained"}`, 1},
	} {
		got, ok := query(t, promURL, c.q)
		if !ok || got != c.want {
			t.Errorf("%s = %v (result %v), want %v", c.q, got, ok, c.want)
		}
	}
	t.Logf("Prometheus holds:\n%s", series(t, promURL, `{__name__=~"sockreap_.*",__name__!~".*_bucket"}`))

	// Every query of the Grafana dashboard runs on this Prometheus, and
	// the panels about drains show data.
	raw, err := os.ReadFile("../../deploy/grafana/sockreap-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			q := strings.NewReplacer(`$instance`, `.*`, `$__rate_interval`, `1m`).Replace(tg.Expr)
			if _, err := instant(promURL, q); err != nil {
				t.Errorf("dashboard panel %q: %s: %v", p.Title, q, err)
			}
			queries++
		}
	}
	if queries < 10 {
		t.Errorf("dashboard has %d queries", queries)
	}
	// The alerting rules load and evaluate on it.
	if nettest.WaitUntil(30*time.Second, func() bool { return rulesEvaluated(t, promURL) >= 6 }) < 0 {
		t.Errorf("fewer than 6 alerting rules loaded and evaluated without error")
	}
	// A hook over its budget and one killed: the failure alerts fire.
	for _, a := range []string{"SockreapDrainFailures", "SockreapHookFailures"} {
		q := fmt.Sprintf(`count(ALERTS{alertname=%q,alertstate="firing"})`, a)
		if nettest.WaitUntil(30*time.Second, func() bool { _, ok := query(t, promURL, q); return ok }) < 0 {
			t.Errorf("alert %s does not fire after the test sequence; ALERTS: %s", a, series(t, promURL, `ALERTS`))
		}
	}
	if v, ok := query(t, promURL, `sum(sockreap_drains_total{outcome="drained",instance=~".*"})`); !ok || v != 5 {
		t.Errorf("the dashboard's drained figure: %v, want 5 (hook 2, gc 2, cli 1)", v)
	}
}

// series returns every series an instant query returns, one per line,
// sorted.
func series(t *testing.T, promURL, q string) string {
	t.Helper()
	rs, err := instant(promURL, q)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range rs {
		name := s.Metric["__name__"]
		var ls []string
		for k, v := range s.Metric {
			if k != "__name__" && k != "instance" && k != "job" {
				ls = append(ls, fmt.Sprintf("%s=%q", k, v))
			}
		}
		sort.Strings(ls)
		lines = append(lines, fmt.Sprintf("%s{%s} %v", name, strings.Join(ls, ","), s.Value[1]))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// rulesEvaluated counts the rules Prometheus has evaluated without error.
func rulesEvaluated(t *testing.T, promURL string) int {
	resp, err := http.Get(promURL + "/api/v1/rules")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&r) != nil {
		return 0
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			if rule.LastError != "" {
				t.Errorf("rule %s: %s", rule.Name, rule.LastError)
			}
			if rule.Health == "ok" {
				n++
			}
		}
	}
	return n
}
