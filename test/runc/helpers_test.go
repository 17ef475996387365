// Package runc_test runs sockreap's OCI hooks under real runtimes (runc,
// and crun where it works): real containers built from busybox-static, real
// network namespaces, a real TCP peer in a namespace the test creates,
// connected over a veth. The witness that a container's namespace was freed
// is the peer end of that veth disappearing.
package runc_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/pin/pintest"
	"github.com/sockreap/sockreap/internal/testbin"
)

// hookBin is sockreap-hook built for this test run.
func hookBin() string { return testbin.Path("sockreap-hook") }

func TestMain(m *testing.M) {
	nettest.RunHelper()
	testbin.Main(m, "sockreap-hook")
}

// runtime is an OCI runtime binary under test.
type runtime struct {
	name string // runc, crun
	path string
	root string // --root, "" for the runtime's default
}

var (
	crunOnce   sync.Once
	crunReason string
)

// requireRuntime skips the test unless it runs as root with a working name
// runtime, busybox-static and iproute2.
func requireRuntime(t *testing.T, name string) *runtime {
	t.Helper()
	nettest.RequireRoot(t)
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (apt-get install %s)", name, name)
	}
	if _, err := os.Stat(ocitest.Busybox()); err != nil {
		t.Skip("needs a static busybox at /bin/busybox (apt-get install busybox-static)")
	}
	for _, tool := range []string{"ss", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	rt := &runtime{name: name, path: path}
	if name == "crun" {
		// crun refuses some cgroup layouts (hybrid v1+v2): find out once
		// with a trivial container and skip saying why.
		crunOnce.Do(func() { crunReason = rt.smokeTest(t) })
		if crunReason != "" {
			t.Skipf("crun cannot run containers on this machine: %s", crunReason)
		}
	}
	return rt
}

func (rt *runtime) smokeTest(t *testing.T) string {
	b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "true"}})
	id := nettest.Unique("srsmoke")
	out, err := rt.cmd("run", "--bundle", b.dir, id).CombinedOutput() // the process exits at once
	_ = rt.cmd("delete", "-f", id).Run()
	if err != nil {
		return strings.TrimSpace(string(out))
	}
	return ""
}

func (rt *runtime) cmd(args ...string) *exec.Cmd {
	if rt.root != "" {
		args = append([]string{"--root", rt.root}, args...)
	}
	c := exec.Command(rt.path, args...)
	c.Stdin = nil
	return c
}

// run runs the runtime and fails the test on error.
func (rt *runtime) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := rt.cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", rt.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// bundleSpec describes a test container.
type bundleSpec struct {
	args        []string          // the container process
	netnsPath   string            // join this network namespace instead of a new one
	annotations map[string]string // config.json annotations
}

// bundle is an OCI bundle in a temporary directory.
type bundle struct {
	dir string
}

// newBundle builds a bundle: a busybox-static rootfs and the config.json
// of `runc spec`, adjusted to spec.
func newBundle(t *testing.T, spec bundleSpec) *bundle {
	t.Helper()
	dir := t.TempDir()
	ocitest.Rootfs(t, filepath.Join(dir, "rootfs"))
	ocitest.Spec(t, dir, spec.args...)
	if spec.annotations != nil || spec.netnsPath != "" {
		ocitest.Edit(t, dir, func(doc map[string]any) {
			if spec.annotations != nil {
				doc["annotations"] = spec.annotations
			}
			if spec.netnsPath != "" {
				ocitest.SetNetnsPath(doc, spec.netnsPath)
			}
		})
	}
	return &bundle{dir: dir}
}

// hooks is where a test's hooks keep their state and log, and the
// configuration file they read instead of the host's: metrics off, so that
// no test writes to (or queues on the lock of) the host's node_exporter
// directory.
type hooks struct {
	stateDir, logFile, config string
}

func newHooks(t *testing.T) *hooks {
	t.Helper()
	dir := t.TempDir()
	h := &hooks{stateDir: filepath.Join(dir, "state"), logFile: filepath.Join(dir, "hook.log"), config: filepath.Join(dir, "config.toml")}
	h.configure(t, "")
	pintest.Cleanup(t, h.stateDir)
	return h
}

// configure writes the hooks' configuration file: metrics off, and the
// stage budget when not "".
func (h *hooks) configure(t *testing.T, budget string) {
	t.Helper()
	conf := "metrics_dir = \"\"\n"
	if budget != "" {
		conf += fmt.Sprintf("budget = %q\n", budget)
	}
	if err := os.WriteFile(h.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

// install adds the hooks to b the way the README says: configure runc.
// extra are more configure flags (--timeout).
func (h *hooks) install(t *testing.T, b *bundle, extra ...string) {
	t.Helper()
	nettest.Run(t, append([]string{hookBin(), "configure", "runc", "--bundle", b.dir, "--hook", hookBin(),
		"--state-dir", h.stateDir, "--log", h.logFile, "--config", h.config}, extra...)...)
}

// logLines returns the JSON lines of the hook log.
func (h *hooks) logLines(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(h.logFile)
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("hook log line is not JSON (%v): %q", err, sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

// find returns the log lines of container id at stage.
func (h *hooks) find(t *testing.T, id, stage string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range h.logLines(t) {
		if l["container"] == id && l["stage"] == stage {
			out = append(out, l)
		}
	}
	return out
}

// onePoststop is the poststop log line of container id, failing the test
// unless there is exactly one.
func (h *hooks) onePoststop(t *testing.T, id string) map[string]any {
	t.Helper()
	ls := h.find(t, id, "poststop")
	if len(ls) != 1 {
		t.Fatalf("want one poststop log line of %s, got %v", id, ls)
	}
	return ls[0]
}

func (h *hooks) pins(t *testing.T) []*pin.Pin {
	t.Helper()
	ps, err := pin.Store{Dir: h.stateDir}.List()
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// pinOf returns the pin of container id (pins are keyed by id and
// runtime root), failing the test when there is none.
func (h *hooks) pinOf(t *testing.T, id string) *pin.Pin {
	t.Helper()
	for _, p := range h.pins(t) {
		if p.Container() == id {
			return p
		}
	}
	t.Fatalf("no pin of container %s", id)
	return nil
}

// container is one container of a runtime.
type container struct {
	rt     *runtime
	id     string
	b      *bundle
	pid    int
	output string // file holding the container process's stdout and stderr
}

// create creates a container (its process waits for start); it is force
// deleted at cleanup.
func (rt *runtime) create(t *testing.T, b *bundle) *container {
	t.Helper()
	return rt.createID(t, b, nettest.Unique("srct"))
}

// createID is create with the container id given.
func (rt *runtime) createID(t *testing.T, b *bundle, id string) *container {
	t.Helper()
	c := &container{rt: rt, id: id, b: b}
	t.Cleanup(func() { _ = rt.cmd("delete", "--force", c.id).Run() })
	// The container inherits create's stdio: give it a file, not a pipe
	// the test would wait on until the container exits.
	out, err := os.Create(filepath.Join(t.TempDir(), "create.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	c.output = out.Name()
	cmd := rt.cmd("create", "--bundle", b.dir, c.id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		t.Fatalf("%s create %s: %v\n%s", rt.name, c.id, err, msg)
	}
	c.pid = c.statePID(t)
	return c
}

func (c *container) statePID(t *testing.T) int {
	t.Helper()
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.rt.run(t, "state", c.id)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

func (c *container) status(t *testing.T) string {
	out, err := c.rt.cmd("state", c.id).Output()
	if err != nil {
		return "gone"
	}
	var st struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(out, &st)
	return st.Status
}

func (c *container) start(t *testing.T) { t.Helper(); c.rt.run(t, "start", c.id) }

// stop kills the container's processes and waits until the runtime says
// it stopped.
func (c *container) stop(t *testing.T) {
	t.Helper()
	c.kill(t)
	if nettest.WaitUntil(20*time.Second, func() bool { return c.status(t) == "stopped" }) < 0 {
		t.Fatalf("container %s did not stop", c.id)
	}
}

// kill sends SIGKILL to the container's process, which must still run.
func (c *container) kill(t *testing.T) {
	t.Helper()
	if out, err := c.rt.cmd("kill", c.id, "KILL").CombinedOutput(); err != nil {
		msg, _ := os.ReadFile(c.output)
		t.Fatalf("%s kill %s: %v: %s\ncontainer output: %s", c.rt.name, c.id, err, out, msg)
	}
}

func (c *container) delete(t *testing.T) { t.Helper(); c.rt.run(t, "delete", c.id) }

func (c *container) netnsPath() string { return "/proc/" + strconv.Itoa(c.pid) + "/ns/net" }

func (c *container) netnsID(t *testing.T) netns.ID {
	t.Helper()
	id, err := netns.IDOf(c.netnsPath())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// inNetns runs a host tool inside the container's network namespace.
func (c *container) inNetns(t *testing.T, args ...string) string {
	t.Helper()
	return nettest.Run(t, append([]string{"nsenter", "--net=" + c.netnsPath()}, args...)...)
}

// wire links the container's namespace to peer with a veth: the container
// end gets ctrAddr, the peer end peerAddr (both /30 of 192.0.2.0/24). It
// returns the name of the peer end, the witness of the container's
// namespace: it disappears when that namespace is freed.
func (c *container) wire(t *testing.T, peer *nettest.Netns, ctrAddr, peerAddr string) string {
	t.Helper()
	peerEnd, ctrEnd := nettest.Unique("srp"), nettest.Unique("src")
	nettest.Run(t, "ip", "-n", peer.Name, "link", "add", peerEnd, "type", "veth", "peer", "name", ctrEnd, "netns", strconv.Itoa(c.pid))
	t.Cleanup(func() { _ = exec.Command("ip", "-n", peer.Name, "link", "del", peerEnd).Run() })
	nettest.Run(t, "ip", "-n", peer.Name, "addr", "add", peerAddr+"/30", "dev", peerEnd)
	nettest.Run(t, "ip", "-n", peer.Name, "link", "set", peerEnd, "up")
	c.inNetns(t, "ip", "addr", "add", ctrAddr+"/30", "dev", ctrEnd)
	c.inNetns(t, "ip", "link", "set", ctrEnd, "up")
	c.inNetns(t, "ip", "link", "set", "lo", "up")
	return peerEnd
}

// waitStuckSender waits until the container's namespace holds an
// established connection with unsent data (the peer stopped reading).
func (c *container) waitStuckSender(t *testing.T) {
	t.Helper()
	ok := nettest.WaitUntil(20*time.Second, func() bool {
		for _, l := range strings.Split(c.inNetns(t, "ss", "-tnH", "state", "established"), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				if q, _ := strconv.Atoi(f[1]); q > 0 {
					return true
				}
			}
		}
		return false
	})
	if ok < 0 {
		t.Fatalf("container %s never got a stuck connection:\n%s", c.id, c.inNetns(t, "ss", "-tan"))
	}
}

// senderArgs is a container process that connects to addr:port and writes
// until the peer's window is closed, then blocks.
func senderArgs(addr string, port int) []string {
	return []string{"/bin/busybox", "sh", "-c", fmt.Sprintf("exec /bin/busybox nc %s %d </dev/zero", addr, port)}
}

// reportOf returns the drain report in a log line, or nil.
func reportOf(l map[string]any) map[string]any {
	r, _ := l["report"].(map[string]any)
	return r
}

func num(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}
