package engine

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// containerd replaces its built-in runtimes with a runtimes table of the
// file, so a file that gets only the sockreap handler must also get runc,
// the default. test/cri starts the real daemons on these outputs.
func TestContainerdKeepsDefaultRunc(t *testing.T) {
	// Debian 12's /etc/containerd/config.toml as the package ships it: no
	// runtimes table at all.
	debian, err := os.ReadFile("testdata/containerd-debian12.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		old       []byte
		exists    bool
		version   int
		plugin    string
		sandboxer any
	}{
		{"debian 12 stock", debian, true, 0, "io.containerd.grpc.v1.cri", nil},
		{"empty v2", nil, false, 2, "io.containerd.grpc.v1.cri", nil},
		{"empty v3", nil, false, 3, "io.containerd.cri.v1.runtime", "podsandbox"},
		{"blank existing v3", []byte("\n"), true, 3, "io.containerd.cri.v1.runtime", "podsandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Containerd("config.toml", tc.old, tc.exists, ContainerdOptions{ShimPath: shim, Version: tc.version})
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := toml.Unmarshal(e.New, &got); err != nil {
				t.Fatalf("output is not TOML: %v\n%s", err, e.New)
			}
			rts, _ := dig(got, "plugins", tc.plugin, "containerd", "runtimes").(map[string]any)
			runc, _ := rts["runc"].(map[string]any)
			if runc == nil || runc["runtime_type"] != "io.containerd.runc.v2" || runc["sandboxer"] != tc.sandboxer {
				t.Errorf("runc handler %v, want runtime_type io.containerd.runc.v2, sandboxer %v:\n%s", runc, tc.sandboxer, e.New)
			}
			ours, _ := rts[RuntimeName].(map[string]any)
			if ours == nil || ours["runtime_type"] != "io.containerd.runc.v2" || dig(ours, "options", "BinaryName") != shim || ours["sandboxer"] != tc.sandboxer {
				t.Errorf("sockreap handler %v:\n%s", ours, e.New)
			}
			if d := dig(got, "plugins", tc.plugin, "containerd", "default_runtime_name"); d != nil {
				t.Errorf("default_runtime_name set to %v; containerd's own default (runc) must stay", d)
			}
			if tc.old != nil && len(tc.old) > 1 && dig(got, "plugins", "io.containerd.grpc.v1.cri", "cni", "bin_dir") != "/usr/lib/cni" {
				t.Errorf("the file's cni settings lost:\n%s", e.New)
			}
			if len(e.Notes) == 0 {
				t.Error("no note about the added runc handler")
			}
			again, err := Containerd("config.toml", e.New, true, ContainerdOptions{ShimPath: shim})
			if err != nil {
				t.Fatal(err)
			}
			if again.Changed() {
				t.Errorf("second run changes the file:\n%s\n->\n%s", e.New, again.New)
			}
		})
	}
}

// A file whose default is another runtime it defines, or that already has
// runc, gets no runc handler from us.
func TestContainerdLeavesOtherDefaults(t *testing.T) {
	for name, in := range map[string]string{
		"crun default": `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "crun"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
      BinaryName = "/usr/bin/crun"
`,
		"runc with options": `version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    SystemdCgroup = true
`,
	} {
		t.Run(name, func(t *testing.T) {
			e, err := Containerd("config.toml", []byte(in), true, ContainerdOptions{ShimPath: shim})
			if err != nil {
				t.Fatal(err)
			}
			var before, after map[string]any
			if err := toml.Unmarshal([]byte(in), &before); err != nil {
				t.Fatal(err)
			}
			if err := toml.Unmarshal(e.New, &after); err != nil {
				t.Fatal(err)
			}
			for _, plugin := range []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"} {
				b, _ := dig(before, "plugins", plugin, "containerd", "runtimes").(map[string]any)
				a, _ := dig(after, "plugins", plugin, "containerd", "runtimes").(map[string]any)
				if b == nil {
					continue
				}
				if len(a) != len(b)+1 || a[RuntimeName] == nil {
					t.Errorf("runtimes %v -> %v: want only sockreap added", keys(b), keys(a))
				}
				if _, had := b["runc"]; !had && a["runc"] != nil {
					t.Errorf("runc handler added although the default is another runtime:\n%s", e.New)
				}
			}
		})
	}
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// configure --remove on a stock file gives the stock file back: the runc
// handler configure added goes with the sockreap handler.
func TestContainerdRemoveRestoresStock(t *testing.T) {
	debian, err := os.ReadFile("testdata/containerd-debian12.toml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	write(t, path, string(debian))
	tg := ContainerdTarget{Config: path, ContainerdOptions: ContainerdOptions{ShimPath: shim}}
	apply(t, tg.Plan)
	apply(t, tg.PlanRemove)
	b, _ := os.ReadFile(path)
	var want, got map[string]any
	if err := toml.Unmarshal(debian, &want); err != nil {
		t.Fatal(err)
	}
	if err := toml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("after configure and remove:\n%s\nwant Debian's stock file:\n%s", b, debian)
	}
}
