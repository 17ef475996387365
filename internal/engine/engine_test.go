package engine

import (
	"bytes"
	"encoding/json"
	"github.com/sockreap/sockreap/internal/oci"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

const shim = "/usr/local/bin/sockreap-shim"

func TestDockerKeepsKeysAndIsIdempotent(t *testing.T) {
	old := []byte(`{"log-level":"warn","max-concurrent-downloads":12345678901234567890,
"runtimes":{"nvidia":{"path":"/usr/bin/nvidia-container-runtime"},"sockreap":{"runtimeArgs":["--debug"]}},
"default-runtime":"nvidia"}`)
	e, err := Docker("d.json", old, true, DockerOptions{ShimPath: shim, SetDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	dec := json.NewDecoder(bytes.NewReader(e.New))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["log-level"] != "warn" || got["default-runtime"] != RuntimeName {
		t.Errorf("got %s", e.New)
	}
	if !strings.Contains(string(e.New), "12345678901234567890") {
		t.Errorf("big number changed: %s", e.New)
	}
	rt := got["runtimes"].(map[string]any)
	if rt["nvidia"] == nil {
		t.Errorf("nvidia runtime lost: %s", e.New)
	}
	ours := rt[RuntimeName].(map[string]any)
	if ours["path"] != shim || ours["runtimeArgs"] == nil {
		t.Errorf("sockreap runtime: %v", ours)
	}
	if len(e.Notes) == 0 {
		t.Error("no note about the replaced default-runtime nvidia")
	}
	again, err := Docker("d.json", e.New, true, DockerOptions{ShimPath: shim, SetDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() {
		t.Errorf("second run changes the file:\n%s\n->\n%s", e.New, again.New)
	}
}

func TestDockerBadInput(t *testing.T) {
	for _, in := range []string{`{"runtimes": [1]}`, `{bad`, `{"runtimes":{"sockreap":"x"}}`, `{} {}`} {
		if _, err := Docker("/etc/docker/daemon.json", []byte(in), true, DockerOptions{ShimPath: shim}); err == nil || !strings.Contains(err.Error(), "/etc/docker/daemon.json") {
			t.Errorf("%s: err = %v, want one naming the file", in, err)
		}
	}
	e, err := Docker("x", nil, false, DockerOptions{ShimPath: shim})
	if err != nil || !e.Changed() || !strings.Contains(string(e.New), shim) {
		t.Errorf("new file: %v %s", err, e.New)
	}
}

func TestContainerdV2CopiesRuncAndKeepsKeys(t *testing.T) {
	old := []byte(`version = 2
root = "/var/lib/containerd"
oom_score = -999
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["a.b/*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true
      BinaryName = "/opt/runc"
`)
	e, err := Containerd("c.toml", old, true, ContainerdOptions{ShimPath: shim, SetDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := toml.Unmarshal(e.New, &got); err != nil {
		t.Fatalf("%v\n%s", err, e.New)
	}
	if got["root"] != "/var/lib/containerd" || got["oom_score"] != int64(-999) || got["grpc"].(map[string]any)["address"] == nil {
		t.Errorf("top-level keys lost:\n%s", e.New)
	}
	ctd := got["plugins"].(map[string]any)["io.containerd.grpc.v1.cri"].(map[string]any)["containerd"].(map[string]any)
	if ctd["default_runtime_name"] != RuntimeName || ctd["snapshotter"] != "overlayfs" {
		t.Errorf("containerd table:\n%s", e.New)
	}
	rts := ctd["runtimes"].(map[string]any)
	runc := rts["runc"].(map[string]any)
	if runc["options"].(map[string]any)["BinaryName"] != "/opt/runc" {
		t.Errorf("runc handler changed:\n%s", e.New)
	}
	ours := rts[RuntimeName].(map[string]any)
	opts := ours["options"].(map[string]any)
	if ours["runtime_type"] != "io.containerd.runc.v2" || opts["BinaryName"] != shim || opts["SystemdCgroup"] != true || ours["pod_annotations"] == nil {
		t.Errorf("sockreap handler not a copy of runc with the shim:\n%s", e.New)
	}
	if len(e.Notes) == 0 || !strings.Contains(strings.Join(e.Notes, "\n"), "/opt/runc") {
		t.Errorf("no note about runc's BinaryName: %q", e.Notes)
	}
	again, err := Containerd("c.toml", e.New, true, ContainerdOptions{ShimPath: shim, SetDefault: true})
	if err != nil || again.Changed() {
		t.Errorf("second run: %v changed=%v\n%s", err, again.Changed(), again.New)
	}
}

func TestContainerdV3AndNewFile(t *testing.T) {
	e, err := Containerd("c.toml", []byte("version = 3\n"), true, ContainerdOptions{ShimPath: shim})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.New), "io.containerd.cri.v1.runtime") || strings.Contains(string(e.New), "default_runtime_name") {
		t.Errorf("v3:\n%s", e.New)
	}
	e, err = Containerd("c.toml", nil, false, ContainerdOptions{ShimPath: shim, Version: 2})
	if err != nil || !strings.Contains(string(e.New), "version = 2") || !strings.Contains(string(e.New), "io.containerd.grpc.v1.cri") {
		t.Errorf("new v2 file: %v\n%s", err, e.New)
	}
	for _, bad := range []string{"[plugins.cri]\nx = 1\n", "version = 9\n", "version = 2\nplugins = 3\n", "version = \"2\"\n", "[[x"} {
		if _, err := Containerd("/etc/containerd/config.toml", []byte(bad), true, ContainerdOptions{ShimPath: shim}); err == nil || !strings.Contains(err.Error(), "/etc/containerd/config.toml") {
			t.Errorf("%q: err = %v, want one naming the file", bad, err)
		}
	}
}

func TestApplyBacksUpAndKeepsMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(p, []byte(`{"a":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := Docker(p, []byte(`{"a":1}`), true, DockerOptions{ShimPath: shim})
	if err != nil {
		t.Fatal(err)
	}
	backup, err := Apply(e)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); string(b) != `{"a":1}` {
		t.Errorf("backup %s holds %q", backup, b)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, e.New) {
		t.Errorf("file holds %s", b)
	}
	e.Old, e.Exists = e.New, true
	if backup, err := Apply(e); backup != "" || err != nil {
		t.Errorf("unchanged edit wrote a backup %q (%v)", backup, err)
	}
}

// The shipped hooks.d files are what configure hooksd writes for the
// default install path.
func TestDeployHooksDInSync(t *testing.T) {
	for _, stage := range oci.HookStages {
		s := string(stage)
		p := filepath.Join("..", "..", "deploy", "hooks.d", HooksDFile(s))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := HooksDJSON("/usr/local/bin/sockreap-hook", s); !bytes.Equal(b, want) {
			t.Errorf("%s is out of date; want:\n%s", p, want)
		}
	}
}

func TestCRIO(t *testing.T) {
	e := CRIO("x.conf", nil, false, CRIOOptions{ShimPath: shim, SetDefault: true})
	var got map[string]any
	if err := toml.Unmarshal(e.New, &got); err != nil {
		t.Fatalf("%v\n%s", err, e.New)
	}
	rt := got["crio"].(map[string]any)["runtime"].(map[string]any)
	if rt["default_runtime"] != RuntimeName || rt["runtimes"].(map[string]any)[RuntimeName].(map[string]any)["runtime_path"] != shim {
		t.Errorf("drop-in:\n%s", e.New)
	}
}

func TestApplyThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "managed.json")
	link := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(real, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	e, err := Docker(link, []byte(`{}`), true, DockerOptions{ShimPath: shim})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(e); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v", err)
	}
	if b, _ := os.ReadFile(real); !strings.Contains(string(b), shim) {
		t.Errorf("target not written: %s", b)
	}
}
