package cri

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
	"github.com/sockreap/sockreap/internal/testbin"
)

// The installer DaemonSet of deploy/kubernetes, run as kubelet would run
// its init container (configuration derived from the manifest, sockreap's
// image), on a containerd 1.6 node whose /usr/local/bin and /etc/containerd
// are directories of the test: it must copy sockreap-hook and
// sockreap-shim there and configure containerd, and the restarted daemon's
// CRI must then have runc (still the default) and the sockreap handler
// running the installed shim.
func TestInstallerDaemonSet(t *testing.T) {
	d := startDaemon(t, critest.Containerd16)
	hostBin := filepath.Join(d.Dir, "host-usr-local-bin")
	if err := os.MkdirAll(hostBin, 0o755); err != nil {
		t.Fatal(err)
	}
	c := d.RunManifest(t, bins(), critest.InstallerManifest, "sockreap-installer", "install", func(p string) string {
		switch p {
		case "/usr/local/bin":
			return hostBin
		case "/etc/containerd":
			return filepath.Dir(d.Config) // holds config.toml
		}
		t.Fatalf("the installer mounts host path %s, which this test does not map", p)
		return ""
	})
	var state struct {
		Status struct {
			State    string
			ExitCode int
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := json.Unmarshal([]byte(d.Crictl(t, "inspect", "-o", "json", c.ID)), &state); err != nil {
			t.Fatal(err)
		}
		if state.Status.State == "CONTAINER_EXITED" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// containerd writes the container's output to its log file on its own
	// time.
	var out string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if out = readFile(c.Log); strings.Contains(out, "restart it") {
			break
		}
	}
	if state.Status.State != "CONTAINER_EXITED" || state.Status.ExitCode != 0 || !strings.Contains(out, "config.toml: written") {
		t.Fatalf("installer: %s, exit code %d; its output:\n%s", state.Status.State, state.Status.ExitCode, out)
	}
	t.Logf("installer output:\n%s", out)
	for _, name := range []string{"sockreap-hook", "sockreap-shim"} {
		want, _ := os.ReadFile(testbin.Path(name))
		got, err := os.ReadFile(filepath.Join(hostBin, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not installed in the node's /usr/local/bin (%v)", name, err)
		}
		if st, err := os.Stat(filepath.Join(hostBin, name)); err == nil && st.Mode().Perm() != 0o755 {
			t.Errorf("%s installed with mode %v", name, st.Mode().Perm())
		}
	}

	// The node's restart of containerd, then its CRI.
	d.Restart(t)
	info, raw := crictlInfo(t, d)
	rts := info.Config.Containerd.Runtimes
	if info.Config.Containerd.DefaultRuntimeName != "runc" || rts["runc"].RuntimeType != "io.containerd.runc.v2" {
		t.Errorf("after the installer, the default runtime is %q and runc is %v", info.Config.Containerd.DefaultRuntimeName, rts["runc"])
	}
	if got := rts["sockreap"].Options["BinaryName"]; got != "/usr/local/bin/sockreap-shim" {
		t.Errorf("the sockreap handler runs %v, want the installed /usr/local/bin/sockreap-shim\ncrictl info:\n%s", got, raw)
	}
	p := d.RunPod(t, critest.PodSpec{PID: critest.NamespaceContainer})
	p.Stop(t)
	p.Remove(t)
}
