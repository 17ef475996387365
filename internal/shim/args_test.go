package shim

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		cmd, bundle     string
		log, format     string
		runtime, config string
		argv            []string
	}{
		{args: []string{"--root", "/run/x", "--log", "/l.json", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b", "--pid-file", "/p", "id"},
			cmd: "create", bundle: "/b", log: "/l.json", format: "json"},
		{args: []string{"--root=/r", "--debug", "run", "-d", "--pid-file=/p", "-b", "/bb", "id"}, cmd: "run", bundle: "/bb", format: "text"},
		{args: []string{"-log", "/l", "create", "--console-socket", "/s", "id"}, cmd: "create", bundle: "", log: "/l", format: "text"},
		{args: []string{"--sockreap-runtime=crun", "--sockreap-config", "/c.toml", "--root", "/r", "state", "id"}, cmd: "state", format: "text",
			runtime: "crun", config: "/c.toml", argv: []string{"--root", "/r", "state", "id"}},
		{args: []string{"--version"}, cmd: "", format: "text"},
		{args: []string{"create", "id", "--bundle", "/not-a-flag"}, cmd: "create", bundle: "", format: "text"},
	} {
		inv := Parse(tc.args)
		if inv.Command != tc.cmd || inv.Bundle() != tc.bundle || inv.Log != tc.log || inv.LogFormat != tc.format || inv.Runtime != tc.runtime || inv.Config != tc.config {
			t.Errorf("%q: got cmd=%q bundle=%q log=%q format=%q runtime=%q config=%q", tc.args, inv.Command, inv.Bundle(), inv.Log, inv.LogFormat, inv.Runtime, inv.Config)
		}
		want := tc.argv
		if want == nil {
			want = tc.args
		}
		if got := inv.Argv(); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: argv %q, want %q", tc.args, got, want)
		}
	}
}

func TestResolveRuntime(t *testing.T) {
	if _, err := ResolveRuntime("no-such-runtime-sockreap"); err == nil {
		t.Error("missing runtime resolved")
	}
	if _, err := ResolveRuntime("relative/runc"); err == nil {
		t.Error("relative path accepted")
	}
	t.Setenv("PATH", "")
	if p, err := ResolveRuntime("sh"); err != nil || p == "" {
		t.Errorf("empty PATH: fallback search failed: %v", err)
	}
}
