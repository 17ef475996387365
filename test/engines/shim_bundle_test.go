package engines

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
)

// TestShimBundleFlags: the shim finds the bundle wherever runc reads it
// from (--bundle after the container id, -b, --bundle=, -b=), run from
// another directory that holds a config.json of its own. The hooks go
// into the bundle's config.json, the container gets pinned, and the
// working directory's config.json is never written.
func TestShimBundleFlags(t *testing.T) {
	need(t, "runc")
	hooks := newHookEnv(t, t.TempDir())
	rt := &runtime{bin: shimBin(), root: t.TempDir(), env: []string{"SOCKREAP_SHIM_CONFIG=" + hooks.shimConfig}}
	for _, form := range []struct {
		name string
		args func(b, id string) []string
	}{
		{"bundle after id", func(b, id string) []string { return []string{"create", id, "--bundle", b} }},
		{"-b after id", func(b, id string) []string { return []string{"create", id, "-b", b} }},
		{"--bundle=", func(b, id string) []string { return []string{"create", "--bundle=" + b, id} }},
		{"-b=", func(b, id string) []string { return []string{"create", "-b=" + b, id} }},
		{"flags around id", func(b, id string) []string {
			return []string{"create", "--pid-file", filepath.Join(b, "pid"), id, "--no-pivot", "--bundle", b}
		}},
	} {
		t.Run(form.name, func(t *testing.T) {
			b := newBundle(t, "/bin/sleep", "1000")
			cwd, decoy := decoyDir(t)
			id := nettest.Unique("srb")
			t.Cleanup(func() { _ = exec.Command("runc", "--root", rt.root, "delete", "--force", id).Run() })
			res := rt.run(t, cwd, form.args(b, id)...)
			if res.code != 0 {
				t.Fatalf("create: %d %s", res.code, res.stderr)
			}
			if cfg, _ := os.ReadFile(filepath.Join(b, "config.json")); !bytes.Contains(cfg, []byte("sockreap-hook")) {
				t.Errorf("the bundle's config.json has no sockreap hooks")
			}
			decoy.check(t)
			if out := run(t, hookBin(), "pins", "--state-dir", hooks.stateDir); !strings.Contains(out, id) {
				t.Errorf("container %s not pinned at createRuntime:\n%s", id, out)
			}
			if res := rt.run(t, "/", "delete", "--force", id); res.code != 0 {
				t.Fatalf("delete: %d %s", res.code, res.stderr)
			}
			hooks.checkNoPin(t, id)
		})
	}

	// A line runc reads but the shim cannot be sure of (a bundle whose
	// name starts with a dash): the container runs without the hooks,
	// the --log file says why, and no config.json is touched.
	t.Run("doubt", func(t *testing.T) {
		cwd, decoy := decoyDir(t)
		b := newBundle(t, "/bin/sleep", "1000")
		dashed := filepath.Join(cwd, "-bundle")
		if err := os.Rename(b, dashed); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(filepath.Join(dashed, "config.json"))
		id := nettest.Unique("srb")
		t.Cleanup(func() { _ = exec.Command("runc", "--root", rt.root, "delete", "--force", id).Run() })
		log := filepath.Join(t.TempDir(), "runtime.log")
		res := rt.run(t, cwd, "--log", log, "create", id, "--bundle", "-bundle")
		if res.code != 0 {
			t.Fatalf("create must still succeed (fail open): %d %s", res.code, res.stderr)
		}
		if after, _ := os.ReadFile(filepath.Join(dashed, "config.json")); !bytes.Equal(before, after) {
			t.Errorf("the bundle's config.json was changed although the shim was in doubt")
		}
		decoy.check(t)
		if data, _ := os.ReadFile(log); !bytes.Contains(data, []byte("without sockreap hooks")) {
			t.Errorf("no warning in the --log file:\n%s", data)
		}
		if res := rt.run(t, "/", "delete", "--force", id); res.code != 0 {
			t.Fatalf("delete: %d %s", res.code, res.stderr)
		}
	})
}

// decoy is a config.json in the working directory that must stay as it is.
type decoy struct {
	path string
	data []byte
}

func decoyDir(t *testing.T) (string, *decoy) {
	t.Helper()
	dir := t.TempDir()
	d := &decoy{path: filepath.Join(dir, "config.json"), data: []byte(`{"ociVersion":"1.0.2","decoy":true}` + "\n")}
	if err := os.WriteFile(d.path, d.data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, d
}

func (d *decoy) check(t *testing.T) {
	t.Helper()
	if got, _ := os.ReadFile(d.path); !bytes.Equal(got, d.data) {
		t.Errorf("%s in the working directory was written:\n%s", d.path, got)
	}
}
