package cri

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/critest"
)

// `sockreap-hook configure containerd` on Debian 12's stock config.toml and
// on a new file, then the real daemon on the result: its CRI must load with
// runc (the default) and sockreap as handlers, and run a pod with each. The
// rig only adds the daemon's own paths and restrict_oom_score_adj to the
// written file (critest.Daemon.Overlay), never runtimes.
func TestConfigureContainerd(t *testing.T) {
	need(t)
	stock, err := os.ReadFile("../../internal/engine/testdata/containerd-debian12.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*critest.Engine{critest.Containerd16, critest.Containerd22} {
		for _, start := range []struct {
			name string
			file []byte // nil: no file
		}{{"debian12-stock", stock}, {"new-file", nil}} {
			t.Run(e.Name+"/"+start.name, func(t *testing.T) {
				if r := e.Missing(); r != "" {
					t.Skip(r)
				}
				d := critest.NewDaemon(t, e)
				if start.file != nil {
					if err := os.WriteFile(d.Config, start.file, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				// As on a node running this engine: configure asks the
				// containerd on PATH which config version to write.
				cmd := exec.Command(bins().Hook, "configure", "containerd", "--config", d.Config, "--shim", bins().Shim)
				cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(e.Containerd)+":"+os.Getenv("PATH"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("configure containerd: %v\n%s", err, out)
				}
				t.Logf("configure containerd:\n%s", out)
				d.Start(t)

				var info struct {
					Status struct {
						Conditions []struct {
							Type   string
							Status bool
						}
					}
					Config struct {
						Containerd struct {
							DefaultRuntimeName string
							Runtimes           map[string]struct {
								RuntimeType string
								Options     map[string]any
							}
						}
					}
				}
				raw := d.Crictl(t, "info")
				if err := json.Unmarshal([]byte(raw), &info); err != nil {
					t.Fatalf("crictl info: %v\n%s", err, raw)
				}
				ready := map[string]bool{}
				for _, c := range info.Status.Conditions {
					ready[c.Type] = c.Status
				}
				if !ready["RuntimeReady"] || !ready["NetworkReady"] {
					t.Errorf("CRI conditions %v, want RuntimeReady and NetworkReady", ready)
				}
				rts := info.Config.Containerd.Runtimes
				if def := info.Config.Containerd.DefaultRuntimeName; def != "runc" {
					t.Errorf("default runtime %q, want runc", def)
				}
				if rts["runc"].RuntimeType != "io.containerd.runc.v2" {
					t.Errorf("CRI runtimes %v: no runc handler", rts)
				}
				if rts["sockreap"].RuntimeType != "io.containerd.runc.v2" || rts["sockreap"].Options["BinaryName"] != bins().Shim {
					t.Errorf("CRI runtimes %v: no sockreap handler running %s", rts, bins().Shim)
				}
				if t.Failed() {
					t.Logf("crictl info:\n%s\nconfig:\n%s", raw, readFile(d.Config))
				}
				for _, handler := range []string{"", "sockreap"} {
					p := d.RunPod(t, critest.PodSpec{Handler: handler, PID: critest.NamespaceContainer})
					p.Stop(t)
					p.Remove(t)
				}
			})
		}
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
