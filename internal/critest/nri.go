package critest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	srimage "github.com/sockreap/sockreap/internal/image"
	"github.com/sockreap/sockreap/internal/kubepod"
	"github.com/sockreap/sockreap/internal/nettest"
)

// The DaemonSets of deploy/kubernetes, relative to the repository root.
const (
	NRIManifest       = "deploy/kubernetes/sockreap-nri.yaml"
	InstallerManifest = "deploy/kubernetes/sockreap-installer.yaml"
)

// NRIModes run sockreap's NRI plugin on containerd 2.x with plain runc as
// the runtime (no handler, no RuntimeClass): as a daemon connecting to
// NRI's socket, pre-registered in NRI's plugin directory (containerd starts
// it), and as the DaemonSet of deploy/kubernetes run through the CRI.
func NRIModes(b Bins) []*Mode {
	return []*Mode{NRIMode(Containerd22, b, NRIDaemon), NRIMode(Containerd22, b, NRIPreregistered), NRIMode(Containerd22, b, NRIDaemonSet)}
}

// Ways of running the NRI plugin.
const (
	NRIDaemon        = "daemon"        // connects to NRI's socket
	NRIPreregistered = "preregistered" // in NRI's plugin directory, started by containerd
	NRIDaemonSet     = "daemonset"     // deploy/kubernetes's DaemonSet pod, run through the CRI
)

// NRIMode runs sockreap's NRI plugin the given way on engine e (one with
// NRI), plain runc as the runtime.
func NRIMode(e *Engine, b Bins, how string) *Mode {
	mode := func(name string, prepare func(t T, d *Daemon, log *nriLog)) *Mode {
		m := &Mode{Name: e.Name + "+nri-" + name, Engine: e, Drains: true}
		if !e.NRI {
			m.Unsupported = e.Name + " has no NRI"
		}
		m.Prepare = func(t T, d *Daemon) {
			t.Helper()
			if b.NRI == "" {
				t.Fatalf("mode %s: no sockreap-nri binary", m.Name)
			}
			l := &nriLog{}
			nriLogs.Store(d, l)
			prepare(t, d, l)
			// Every start of containerd must end with the plugin
			// registered (again): the scenarios stop pods right after.
			d.AfterStart = append(d.AfterStart, func(t T) {
				t.Helper()
				l.starts++
				l.waitRegistered(t, d)
			})
		}
		m.Check = func(t T, d *Daemon, p *Pod, drained bool) {
			t.Helper()
			l, _ := nriLogs.Load(d)
			CheckNRILog(t, l.(*nriLog), p, drained)
		}
		return m
	}
	switch how {
	case NRIDaemon:
		return mode(how, func(t T, d *Daemon, l *nriLog) {
			t.Helper()
			l.path = filepath.Join(d.Dir, "nri-daemon.log")
			// Started before containerd: it retries until NRI's socket
			// answers, as it does when containerd restarts.
			cmd := exec.Command(b.NRI, "--socket", d.NRISocket, "--log-file", l.path, "--state-dir", filepath.Join(d.Dir, "nri-state"))
			out, err := os.Create(filepath.Join(d.Dir, "nri-daemon.out"))
			if err != nil {
				t.Fatalf("%v", err)
			}
			defer out.Close()
			cmd.Stdout, cmd.Stderr = out, out
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
			if err := cmd.Start(); err != nil {
				t.Fatalf("start %s: %v", b.NRI, err)
			}
			t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		})
	case NRIPreregistered:
		return mode(how, func(t T, d *Daemon, l *nriLog) {
			t.Helper()
			l.path = filepath.Join(d.Dir, "nri.log")
			copyFile(t, b.NRI, filepath.Join(d.NRIPluginDir, "90-sockreap"), 0o755)
			// containerd starts the plugin without arguments and hands it
			// this file once connected.
			conf := "log_file = " + quote(l.path) + "\nstate_dir = " + quote(filepath.Join(d.Dir, "nri-state")) + "\n"
			if err := os.WriteFile(filepath.Join(d.NRIConfDir, "90-sockreap.conf"), []byte(conf), 0o644); err != nil {
				t.Fatalf("%v", err)
			}
		})
	case NRIDaemonSet:
		return mode(how, func(t T, d *Daemon, l *nriLog) {
			t.Helper()
			d.AfterStart = append(d.AfterStart, func(t T) {
				t.Helper()
				if l.path == "" {
					l.path, l.cri = runDaemonSet(t, d, b), true
				}
			})
		})
	}
	panic("critest: unknown NRI mode " + how)
}

// runDaemonSet imports sockreap's image and runs the NRI DaemonSet's pod
// on d through the CRI, its configuration derived from the manifest. Host
// paths stay the node's, except NRI's socket directory, which is the
// daemon's own. It returns the plugin container's log file.
func runDaemonSet(t T, d *Daemon, b Bins) string {
	t.Helper()
	if filepath.Base(d.NRISocket) != "nri.sock" {
		t.Fatalf("the manifest's --socket names nri.sock; the daemon's is %s", d.NRISocket)
	}
	c := d.RunManifest(t, b, NRIManifest, "sockreap-nri", "sockreap-nri", func(p string) string {
		if p == "/var/run/nri" {
			return filepath.Dir(d.NRISocket)
		}
		return p
	})
	return c.Log
}

// ManifestContainer is a container of a manifest's pod run on a daemon.
type ManifestContainer struct {
	Pod, ID string
	Log     string // its CRI log file
}

// RunManifest runs container name of DaemonSet ds in manifest (relative
// to the repository root) on d through the CRI, as kubelet would: the pod
// and container configurations derived from the manifest (package
// kubepod), sockreap's image (`make image`'s, built from b) imported.
// hostPath maps the manifest's host paths to this machine's.
func (d *Daemon) RunManifest(t T, b Bins, manifest, ds, name string, hostPath func(string) string) ManifestContainer {
	t.Helper()
	spec, err := kubepod.ReadDaemonSet(filepath.Join(repoRoot(t), manifest), ds)
	if err != nil {
		t.Fatalf("%v", err)
	}
	c, err := spec.Container(name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	archive := filepath.Join(d.Dir, "sockreap-image.tar")
	if err := srimage.Build(archive, c.Image, "", []string{b.Hook, b.Shim, b.NRI}); err != nil {
		t.Fatalf("build sockreap's image: %v", err)
	}
	must(t, "ctr", "--address", d.Sock, "--namespace", "k8s.io", "images", "import", archive)

	dir := filepath.Join(d.Dir, "logs", ds+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	cfg, err := spec.ContainerConfig(c, kubepod.HostDirs{HostPath: hostPath, EmptyDir: func(v string) string {
		p := filepath.Join(d.Dir, "emptydir-"+v)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatalf("%v", err)
		}
		return p
	}})
	if err != nil {
		t.Fatalf("%v", err)
	}
	podJSON := writeJSONFile(t, filepath.Join(dir, "pod.json"), spec.PodConfig(ds+"-test", "kube-system", ds+"-test", dir))
	ctrJSON := writeJSONFile(t, filepath.Join(dir, "container.json"), cfg)
	id := d.Crictl(t, "runp", podJSON)
	cid := d.Crictl(t, "create", id, ctrJSON, podJSON)
	d.Crictl(t, "start", cid)
	return ManifestContainer{Pod: id, ID: cid, Log: filepath.Join(dir, c.Name+".log")}
}

// nriLog is where a mode's plugin logs: a JSON log file, or (cri) a
// container's CRI log file whose lines carry the JSON after a timestamp,
// the stream and a tag.
type nriLog struct {
	path   string
	cri    bool
	starts int
}

// nriLogs maps a daemon to its NRI plugin's log (*Daemon → *nriLog).
var nriLogs sync.Map

// NRIRecord is a line of the plugin's log.
type NRIRecord struct {
	Level, Msg, Event, Action, Sandbox, Error string
	Warnings                                  []string
	// DurationMS is how long the plugin took over the pod.
	DurationMS float64 `json:"duration_ms"`
	Line       string  `json:"-"`
}

// NRIRecords returns the lines of the NRI plugin's log of d, nil when d
// runs no NRI mode.
func (d *Daemon) NRIRecords(t T) []NRIRecord {
	t.Helper()
	l, ok := nriLogs.Load(d)
	if !ok {
		return nil
	}
	return l.(*nriLog).records(t)
}

func (l *nriLog) records(t T) []NRIRecord {
	t.Helper()
	b, err := os.ReadFile(l.path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("%v", err)
	}
	var recs []NRIRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if l.cri {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 {
				continue
			}
			line = f[3]
		}
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r NRIRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("NRI plugin log %s: %v: %s", l.path, err, line)
		}
		r.Line = line
		recs = append(recs, r)
	}
	return recs
}

// waitRegistered waits until the plugin has registered with NRI once per
// start of containerd.
func (l *nriLog) waitRegistered(t T, d *Daemon) {
	t.Helper()
	count := func() int {
		n := 0
		for _, r := range l.records(t) {
			if r.Msg == "registered with NRI" {
				n++
			}
		}
		return n
	}
	if nettest.WaitUntil(30*time.Second, func() bool { return count() >= l.starts }) < 0 {
		b, _ := os.ReadFile(l.path)
		t.Fatalf("the NRI plugin did not register (%d registrations for %d starts of containerd); its log:\n%s\ncontainerd log (tail):\n%s", count(), l.starts, tail(b, 20), d.LogTail(20))
	}
}

// CheckNRILog checks the plugin's log about pod p: StopPodSandbox drained
// its namespace when drained (else found nothing to drain: host network),
// with no error and no warning.
func CheckNRILog(t T, l *nriLog, p *Pod, drained bool) {
	t.Helper()
	want := "drained"
	if !drained || p.Spec.Network == NamespaceNode {
		want = "nothing-to-drain"
	}
	var lines []string
	n := 0
	for _, r := range l.records(t) {
		if r.Sandbox != p.ID {
			continue
		}
		lines = append(lines, r.Line)
		if r.Level != "INFO" {
			t.Errorf("NRI plugin %s about pod %s: %s %v", r.Level, p.ID, r.Error, r.Warnings)
		}
		if n == 0 && r.Action != want {
			t.Errorf("NRI plugin's first StopPodSandbox of pod %s: %s, want %s", p.ID, r.Action, want)
		}
		n++
	}
	if n == 0 {
		t.Errorf("NRI plugin logged nothing about pod %s", p.ID)
	}
	if t.Failed() {
		t.Logf("NRI plugin log about pod %s:\n%s", p.ID, strings.Join(lines, "\n"))
	}
}

func copyFile(t T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatalf("%v", err)
	}
}

func writeJSONFile(t T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// repoRoot finds the repository root (go.mod) above the working directory.
func repoRoot(t T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("%v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory")
		}
		dir = parent
	}
}
