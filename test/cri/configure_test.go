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
				t.Logf("configure containerd:\n%s", configure(t, e, d))
				d.Start(t)
				checkHandlers(t, d, "runc", "sockreap")
				for _, handler := range []string{"", "sockreap"} {
					p := d.RunPod(t, critest.PodSpec{Handler: handler, PID: critest.NamespaceContainer})
					p.Stop(t)
					p.Remove(t)
				}

				// --remove, and the daemon on what it leaves.
				t.Logf("configure containerd --remove:\n%s", configure(t, e, d, "--remove"))
				d.Stop(t)
				d.Start(t)
				checkHandlers(t, d, "runc")
				p := d.RunPod(t, critest.PodSpec{PID: critest.NamespaceContainer})
				p.Stop(t)
				p.Remove(t)
			})
		}
	}
}

// configure runs `sockreap-hook configure containerd` on d's config file
// as on a node running engine e: with its containerd first on PATH, which
// configure asks for the config version of a new file.
func configure(t *testing.T, e *critest.Engine, d *critest.Daemon, extra ...string) string {
	t.Helper()
	cmd := exec.Command(bins().Hook, append([]string{"configure", "containerd", "--config", d.Config, "--shim", bins().Shim}, extra...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(e.Containerd)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("configure containerd %s: %v\n%s", strings.Join(extra, " "), err, out)
	}
	return string(out)
}

// checkHandlers fails unless the daemon's CRI is ready, runs runc by
// default and has exactly the given runtime handlers.
func checkHandlers(t *testing.T, d *critest.Daemon, handlers ...string) {
	t.Helper()
	info, raw := crictlInfo(t, d)
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
	if len(rts) != len(handlers) {
		t.Errorf("CRI runtimes %v, want %v", rts, handlers)
	}
	for _, h := range handlers {
		if rts[h].RuntimeType != "io.containerd.runc.v2" {
			t.Errorf("CRI runtimes %v: no %s handler", rts, h)
		}
	}
	if rt, ok := rts["sockreap"]; ok && rt.Options["BinaryName"] != bins().Shim {
		t.Errorf("the sockreap handler runs %v, want %s", rt.Options["BinaryName"], bins().Shim)
	}
	if t.Failed() {
		t.Fatalf("crictl info:\n%s\nconfig:\n%s", raw, readFile(d.Config))
	}
}

// criInfo is what the tests read of `crictl info`.
type criInfo struct {
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

// crictlInfo is d's `crictl info`, decoded and raw.
func crictlInfo(t *testing.T, d *critest.Daemon) (criInfo, string) {
	t.Helper()
	var info criInfo
	raw := d.Crictl(t, "info")
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("crictl info: %v\n%s", err, raw)
	}
	return info, raw
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
