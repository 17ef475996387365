package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// apply plans with plan and applies the edits; it returns whether a file
// changed.
func apply(t *testing.T, plan func() ([]*Edit, error)) bool {
	t.Helper()
	edits, err := plan()
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, e := range edits {
		changed = changed || e.Changed()
		if _, err := Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	return changed
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Remove undoes configure, keeps what the operator had, backs the file up,
// and a second remove changes nothing.
func TestDockerRemoveRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.json")
	orig := `{"log-driver": "journald", "max-concurrent-downloads": 3, "runtimes": {"other": {"path": "/x"}}}`
	write(t, path, orig)
	tg := DockerTarget{Config: path, DockerOptions: DockerOptions{ShimPath: "/usr/local/bin/sockreap-shim", SetDefault: true}}
	apply(t, tg.Plan)
	if !apply(t, tg.PlanRemove) {
		t.Fatal("remove changed nothing")
	}
	var want, got map[string]any
	_ = json.Unmarshal([]byte(orig), &want)
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want["default-runtime"] = "runc" // it was sockreap: back to Docker's default
	if !reflect.DeepEqual(want, got) {
		t.Errorf("after remove: %s, want %v", b, want)
	}
	if backups, _ := filepath.Glob(path + ".sockreap-bak.*"); len(backups) != 2 {
		t.Errorf("backups %v, want one per change", backups)
	}
	if apply(t, tg.PlanRemove) {
		t.Error("a second remove changed the file")
	}
	// Without --set-default the operator's default runtime is not touched.
	write(t, path, `{"default-runtime": "crun"}`)
	tg.SetDefault = false
	apply(t, tg.Plan)
	apply(t, tg.PlanRemove)
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"crun"`) || strings.Contains(string(b), "sockreap") {
		t.Errorf("after remove: %s", b)
	}
}

func TestContainerdRemoveRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, orig string
		version    int
	}{
		{"v2 with runc", "version = 2\n[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc]\nruntime_type = 'io.containerd.runc.v2'\n[plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n", 2},
		{"v3 other keys", "version = 3\nroot = '/var/lib/containerd'\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\ndefault_runtime_name = 'runc'\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			write(t, path, tc.orig)
			tg := ContainerdTarget{Config: path, ContainerdOptions: ContainerdOptions{ShimPath: "/usr/local/bin/sockreap-shim", SetDefault: true, Version: tc.version}}
			apply(t, tg.Plan)
			if b, _ := os.ReadFile(path); !strings.Contains(string(b), "sockreap") {
				t.Fatalf("configure wrote no handler: %s", b)
			}
			apply(t, tg.PlanRemove)
			b, _ := os.ReadFile(path)
			var want, got map[string]any
			_ = toml.Unmarshal([]byte(tc.orig), &want)
			if err := toml.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "sockreap") {
				t.Errorf("sockreap left in:\n%s", b)
			}
			// default_runtime_name was sockreap: gone, so runc applies;
			// where the operator had set runc it stays absent too.
			if ctd := mapAt(want, "plugins", criPlugin[int64(tc.version)], "containerd"); ctd != nil {
				delete(ctd, "default_runtime_name")
				pruneEmpty(want, "plugins", criPlugin[int64(tc.version)], "containerd")
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("after remove:\n%s\nwant %v", b, want)
			}
		})
	}
}

func TestOwnFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	crio := CRIOTarget{File: filepath.Join(dir, "crio.conf.d", "99-sockreap.conf"), CRIOOptions: CRIOOptions{ShimPath: "/s"}}
	hooks := HooksDTarget{Dir: filepath.Join(dir, "hooks.d"), Hook: "/h"}
	write(t, filepath.Join(dir, "keep.json"), "{}")
	for _, tg := range []Target{crio, hooks} {
		apply(t, tg.Plan)
		if !apply(t, tg.PlanRemove) {
			t.Errorf("%T: remove changed nothing", tg)
		}
		if apply(t, tg.PlanRemove) {
			t.Errorf("%T: a second remove changed something", tg)
		}
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && !d.IsDir() && !strings.Contains(p, ".sockreap-bak.") {
			left = append(left, filepath.Base(p))
		}
		return nil
	})
	if len(left) != 1 || left[0] != "keep.json" {
		t.Errorf("files left: %v, want only keep.json (and backups)", left)
	}
}

func TestCannotReload(t *testing.T) {
	for _, tg := range []Target{ContainerdTarget{}, CRIOTarget{}, HooksDTarget{}} {
		if _, err := tg.Reload(true); !errors.Is(err, ErrCannotReload) {
			t.Errorf("%T.Reload: %v, want ErrCannotReload", tg, err)
		}
	}
}
