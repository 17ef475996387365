package critest

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
)

// NamespaceMode is the CRI's NamespaceMode of a pod's pid or network
// namespace.
type NamespaceMode int

const (
	NamespacePod       NamespaceMode = 0 // shared by the pod (crictl's default for pid)
	NamespaceContainer NamespaceMode = 1 // one per container (kubelet's pid default)
	NamespaceNode      NamespaceMode = 2 // the host's (hostNetwork, hostPID)
)

func (m NamespaceMode) String() string {
	return [...]string{"POD", "CONTAINER", "NODE"}[m]
}

// PodSpec is what a pod is run with.
type PodSpec struct {
	Handler string        // runtime handler (RuntimeClass); "" is the default
	PID     NamespaceMode // kubelet asks for CONTAINER unless shareProcessNamespace
	Network NamespaceMode // POD, or NODE for hostNetwork
}

// Pod is a pod sandbox run through the CRI.
type Pod struct {
	d    *Daemon
	ID   string
	Spec PodSpec
	// Netns is the pod's network namespace mount (/var/run/netns/cni-...),
	// "" with hostNetwork.
	Netns    string
	IP       netip.Addr // on the CNI bridge; invalid with hostNetwork
	PausePID int
	// Containers are the app containers' ids, in start order.
	Containers []string
	dir        string // the pod's crictl JSON files and logs
	podJSON    string
}

// RunPod runs a pod sandbox (crictl runp), removed at cleanup.
func (d *Daemon) RunPod(t T, spec PodSpec) *Pod {
	t.Helper()
	name := nettest.Unique("pod")
	p := &Pod{d: d, Spec: spec, dir: filepath.Join(d.Dir, "logs", name)}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	p.podJSON = p.writeJSON(t, "pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "sockreap-test", "uid": name, "attempt": 0},
		"log_directory": p.dir,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": p.namespaces()}},
	})
	args := []string{"runp"}
	if spec.Handler != "" {
		args = append(args, "--runtime", spec.Handler)
	}
	p.ID = d.Crictl(t, append(args, p.podJSON)...)
	t.Cleanup(func() {
		_, _ = d.crictl("stopp", p.ID)
		_, _ = d.crictl("rmp", "--force", p.ID)
	})
	var info struct {
		Status struct{ Network struct{ IP string } }
		Info   struct {
			Pid         int
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string }
				}
			}
		}
	}
	p.inspect(t, "inspectp", p.ID, &info)
	p.PausePID = info.Info.Pid
	p.IP, _ = netip.ParseAddr(info.Status.Network.IP)
	for _, ns := range info.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			p.Netns = ns.Path
		}
	}
	if spec.Network != NamespaceNode && !strings.HasPrefix(p.Netns, "/var/run/netns/") {
		t.Fatalf("pod %s: network namespace %q is not a mount under /var/run/netns", p.ID, p.Netns)
	}
	return p
}

func (p *Pod) namespaces() map[string]any {
	return map[string]any{"network": int(p.Spec.Network), "pid": int(p.Spec.PID)}
}

func (p *Pod) writeJSON(t T, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v", err)
	}
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

func (p *Pod) inspect(t T, verb, id string, v any) {
	t.Helper()
	out := p.d.Crictl(t, verb, "-o", "json", id)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("crictl %s %s: %v\n%s", verb, id, err, out)
	}
}

// Start creates and starts an app container running command in the pod
// and returns its id.
func (p *Pod) Start(t T, name string, command ...string) string {
	t.Helper()
	return p.StartImage(t, name, AppImage, command...)
}

// StartImage is Start with another image (see Daemon.ImportImage).
func (p *Pod) StartImage(t T, name, image string, command ...string) string {
	t.Helper()
	cfg := p.writeJSON(t, name+".json", map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"command":  command,
		"log_path": name + ".log",
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": p.namespaces()}},
	})
	id := p.d.Crictl(t, "create", p.ID, cfg, p.podJSON)
	p.d.Crictl(t, "start", id)
	p.Containers = append(p.Containers, id)
	return id
}

// PID returns the pid of container id's process.
func (p *Pod) PID(t T, id string) int {
	t.Helper()
	var info struct{ Info struct{ Pid int } }
	p.inspect(t, "inspect", id, &info)
	if info.Info.Pid <= 0 {
		t.Fatalf("container %s has no pid", id)
	}
	return info.Info.Pid
}

// Log returns what container name wrote.
func (p *Pod) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
	return string(b)
}

// Stop stops the pod (crictl stopp) and returns how long that took.
func (p *Pod) Stop(t T) time.Duration {
	t.Helper()
	start := time.Now()
	p.d.Crictl(t, "stopp", p.ID)
	return time.Since(start)
}

// Remove removes the stopped pod (crictl rmp).
func (p *Pod) Remove(t T) {
	t.Helper()
	p.d.Crictl(t, "rmp", p.ID)
}
