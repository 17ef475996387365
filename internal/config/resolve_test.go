package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Resolve: a flag wins over the environment, which wins over the file,
// which wins over the default.
func TestResolvePrecedence(t *testing.T) {
	file := write(t, "state_dir = \"/file/state\"\nlog_file = \"/file/log\"\nbudget = \"3s\"\nstrict = true\norphans = \"spare\"\n")
	env := map[string]string{EnvConfig: file, EnvStateDir: "/env/state"}
	getenv := func(k string) string { return env[k] }

	c, err := Resolve(Overrides{}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/env/state" || c.LogFile != "/file/log" || c.BudgetDuration() != 3*time.Second || !c.Strict || c.Orphans != "spare" {
		t.Errorf("env over file: %+v", c)
	}
	no := false
	c, err = Resolve(Overrides{StateDir: "/flag/state", LogFile: "/flag/log", Budget: time.Second, Strict: &no, Orphans: "destroy", Protocols: []string{"udp"}}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	o := c.DrainOptions(0)
	if c.StateDir != "/flag/state" || c.LogFile != "/flag/log" || c.BudgetDuration() != time.Second || c.Strict || o.Orphans != "destroy" || *o.TCP || !*o.UDP {
		t.Errorf("flags over env and file: %+v", c)
	}
	// --config over $SOCKREAP_CONFIG; a named file that is missing is an
	// error, and the defaults stand in.
	c, err = Resolve(Overrides{Path: filepath.Join(t.TempDir(), "none.toml")}, getenv)
	if err == nil || !strings.Contains(err.Error(), "none.toml") || c.StateDir != "/env/state" || c.Strict {
		t.Errorf("missing --config file: %+v, %v", c, err)
	}
	// Nothing given, no file: the defaults.
	c, err = Resolve(Overrides{Path: write(t, "")}, func(string) string { return "" })
	if err != nil || c.StateDir != DefaultStateDir || c.LogFile != DefaultLogFile || c.Strict {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// metrics_dir: flag over environment over file over default; the file can
// turn metrics off with "".
func TestResolveMetricsDir(t *testing.T) {
	file := write(t, "metrics_dir = \"/file/metrics\"\n")
	env := map[string]string{EnvConfig: file}
	getenv := func(k string) string { return env[k] }
	if c, err := Resolve(Overrides{}, getenv); err != nil || c.MetricsDir != "/file/metrics" {
		t.Errorf("file: %q, %v", c.MetricsDir, err)
	}
	env[EnvMetrics] = "/env/metrics"
	if c, _ := Resolve(Overrides{}, getenv); c.MetricsDir != "/env/metrics" {
		t.Errorf("env over file: %q", c.MetricsDir)
	}
	if c, _ := Resolve(Overrides{MetricsDir: "/flag/metrics"}, getenv); c.MetricsDir != "/flag/metrics" {
		t.Errorf("flag over env: %q", c.MetricsDir)
	}
	if c, _ := Resolve(Overrides{MetricsOff: true}, getenv); c.MetricsDir != "" {
		t.Errorf(`--metrics-dir "" over env and file: %q, want metrics off`, c.MetricsDir)
	}
	off := write(t, "metrics_dir = \"\"\n")
	if c, err := Resolve(Overrides{Path: off}, func(string) string { return "" }); err != nil || c.MetricsDir != "" {
		t.Errorf("metrics off in the file: %q, %v", c.MetricsDir, err)
	}
	if c, _ := Resolve(Overrides{Path: write(t, "")}, func(string) string { return "" }); c.MetricsDir != DefaultMetricsDir {
		t.Errorf("default: %q", c.MetricsDir)
	}
}
