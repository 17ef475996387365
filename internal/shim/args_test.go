package shim

import (
	"errors"
	"os"
	"path/filepath"
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
		{args: []string{"create", "id", "--bundle", "/after-the-id"}, cmd: "create", bundle: "/after-the-id", format: "text"},
	} {
		inv := Parse(tc.args)
		if inv.Command != tc.cmd || bundleOf(inv) != tc.bundle || inv.Log != tc.log || inv.LogFormat != tc.format || inv.Runtime != tc.runtime || inv.Config != tc.config {
			t.Errorf("%q: got cmd=%q bundle=%q log=%q format=%q runtime=%q config=%q", tc.args, inv.Command, bundleOf(inv), inv.Log, inv.LogFormat, inv.Runtime, inv.Config)
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

// bundleOf is the bundle as runc reads it, "" for the working directory
// or a doubt.
func bundleOf(inv *Invocation) string {
	b, err := inv.BundleDir(DialectRunc)
	if err != nil {
		return ""
	}
	if wd, _ := os.Getwd(); b == wd {
		return ""
	}
	return b
}

func TestBundleDir(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	const (
		both   = 0
		runc   = 1 // only runc's reading
		strict = 2 // only the strict reading
	)
	for _, tc := range []struct {
		args   []string
		only   int
		bundle string // "" = the working directory
		err    error  // ErrDoubt, ErrHelp
	}{
		{args: []string{"create", "id"}},
		{args: []string{"create", "--bundle", "/b", "id"}, bundle: "/b"},
		{args: []string{"create", "id", "--bundle", "/b"}, bundle: "/b"},
		{args: []string{"create", "id", "--bundle=/b"}, bundle: "/b"},
		{args: []string{"create", "-b", "/b", "id"}, bundle: "/b"},
		{args: []string{"create", "id", "-b", "/b"}, bundle: "/b"},
		{args: []string{"run", "-d", "id", "-b", "/b"}, only: strict, bundle: "/b"},
		{args: []string{"run", "id", "-d", "-b", "/b"}, bundle: "/b"},
		{args: []string{"create", "-b", "/a", "--bundle", "/b", "id"}, bundle: "/b"},
		{args: []string{"create", "--bundle", "rel", "id"}, bundle: filepath.Join(wd, "rel")},
		{args: []string{"create", "--pid-file", "/p", "--console-socket", "/s", "--pidfd-socket", "/q", "--preserve-fds", "2", "id", "--bundle", "/b"}, bundle: "/b"},
		{args: []string{"create", "--pid-file", "/p", "-b", "/b", "--", "id"}, bundle: "/b"},
		{args: []string{"run", "--detach", "--keep", "--no-subreaper", "--no-pivot", "--no-new-keyring", "-b", "/b", "id"}, bundle: "/b"},
		// runc's Go flags: single dash long names, -b=value.
		{args: []string{"create", "-bundle", "/b", "id"}, only: runc, bundle: "/b"},
		{args: []string{"create", "-b=/b", "id"}, only: runc, bundle: "/b"},
		{args: []string{"create", "-bundle", "/b", "id"}, only: strict, err: ErrDoubt},
		{args: []string{"create", "-b=/b", "id"}, only: strict, err: ErrDoubt},
		// A value for a boolean flag: runc reads a boolean; strict, none.
		{args: []string{"create", "--no-pivot=true", "-b", "/b", "id"}, only: runc, bundle: "/b"},
		{args: []string{"create", "--no-pivot=maybe", "-b", "/b", "id"}, only: runc, err: ErrDoubt},
		{args: []string{"create", "--no-pivot=true", "-b", "/b", "id"}, only: strict, err: ErrDoubt},
		{args: []string{"create", "-b/b", "id"}, err: ErrDoubt},
		{args: []string{"run", "-db", "/b", "id"}, err: ErrDoubt},
		// runc's reorder glues the id to a boolean flag before it, and
		// then reads --bundle as extra arguments: runc refuses that.
		{args: []string{"create", "--no-pivot", "id", "--bundle", "/b"}, only: runc, err: ErrDoubt},
		{args: []string{"run", "-d", "id", "-b", "/b"}, only: runc, err: ErrDoubt},
		{args: []string{"create", "--no-pivot", "id", "--bundle", "/b"}, only: strict, bundle: "/b"},
		// Unknown, ambiguous or incomplete command lines.
		{args: []string{"create", "--new-flag", "x", "--bundle", "/b", "id"}, err: ErrDoubt},
		{args: []string{"create", "--config", "other.json", "id"}, err: ErrDoubt},
		{args: []string{"create", "-f", "other.json", "id"}, err: ErrDoubt},
		{args: []string{"create", "--bundle", "-x", "id"}, err: ErrDoubt},
		{args: []string{"create", "--bundle=", "id"}, err: ErrDoubt},
		{args: []string{"create", "id", "--bundle"}, err: ErrDoubt},
		{args: []string{"create"}, err: ErrDoubt},
		{args: []string{"create", "a", "b"}, err: ErrDoubt},
		{args: []string{"create", "--bundle", "/b", "--", "a", "b"}, err: ErrDoubt},
		{args: []string{"--unknown-global", "x", "create", "id"}, err: ErrDoubt},
		{args: []string{"create", "---bundle", "/b", "id"}, err: ErrDoubt},
		{args: []string{"create", "--help"}, err: ErrHelp},
		{args: []string{"run", "id", "-h"}, err: ErrHelp},
		{args: []string{"state", "id"}, err: ErrDoubt},
	} {
		for _, d := range []Dialect{DialectRunc, DialectStrict} {
			if (tc.only == runc && d != DialectRunc) || (tc.only == strict && d != DialectStrict) {
				continue
			}
			got, err := Parse(tc.args).BundleDir(d)
			want := tc.bundle
			if want == "" {
				want = wd
			}
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("%q dialect %d: got %q, %v; want %v", tc.args, d, got, err, tc.err)
			case tc.err == nil && (err != nil || got != want):
				t.Errorf("%q dialect %d: got %q, %v; want %q", tc.args, d, got, err, want)
			}
		}
	}
}

func TestDialectOf(t *testing.T) {
	if DialectOf("/usr/sbin/runc") != DialectRunc || DialectOf("/usr/bin/crun") != DialectStrict || DialectOf("/opt/youki") != DialectStrict {
		t.Error("wrong dialects")
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
