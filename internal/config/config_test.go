package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/reap"
)

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsWhenMissing(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != DefaultStateDir || c.LogFile != DefaultLogFile || c.BudgetDuration() != 2*time.Second || c.Strict {
		t.Errorf("defaults = %+v", c)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml"), true); err == nil {
		t.Error("a required file that is missing gave no error")
	}
}

func TestLoadFile(t *testing.T) {
	p := write(t, `
state_dir = "/run/x"
log_file = "/tmp/x.log"
budget = "750ms"
strict = true
protocols = ["tcp"]
orphans = "spare"
`)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/run/x" || c.LogFile != "/tmp/x.log" || c.BudgetDuration() != 750*time.Millisecond || !c.Strict || c.Path != p {
		t.Errorf("loaded %+v", c)
	}
	o := c.DrainOptions(time.Second)
	if !*o.TCP || *o.UDP || o.Orphans != reap.OrphansSpare || o.Timeout != time.Second {
		t.Errorf("drain options %+v", o)
	}
	c.ApplyEnv(func(k string) string { return map[string]string{EnvStateDir: "/env/state", EnvLogFile: ""}[k] })
	if c.StateDir != "/env/state" || c.LogFile != "/tmp/x.log" {
		t.Errorf("after env: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	for in, want := range map[string]string{
		`statedir = "/x"`:       "statedir",
		`budget = "soon"`:       "budget",
		`budget = "-1s"`:        "budget",
		`protocols = ["sctp"]`:  "sctp",
		`orphans = "maybe"`:     "orphans",
		`state_dir = `:          "config.toml:1",
		`state_dir = ""`:        "state_dir",
		"[drain]\ntcp = true\n": "drain",
	} {
		c, err := Load(write(t, in), true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one mentioning %q", in, err, want)
		}
		if c == nil || c.StateDir != DefaultStateDir {
			t.Errorf("%q: not the defaults after an error: %+v", in, c)
		}
	}
}
