// Package engines holds the end-to-end tests of sockreap with real
// container engines: dockerd, containerd (ctr) and podman, each started by
// the test with its own state directories and sockets (the host's daemons,
// if any, are never touched), running busybox images made locally.
package engines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/testbin"
)

// Both commands are built into one directory: the shim finds the hook
// next to itself.
func TestMain(m *testing.M) { testbin.Main(m, "sockreap-hook", "sockreap-shim", "sockreap-nri") }

func hookBin() string { return testbin.Path("sockreap-hook") }
func shimBin() string { return testbin.Path("sockreap-shim") }

// need skips the test unless it runs as root and every named program is
// installed.
func need(t *testing.T, progs ...string) {
	t.Helper()
	nettest.RequireRoot(t)
	for _, p := range append([]string{"nsenter", "ss", "busybox"}, progs...) {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", p)
		}
	}
	if !hookStagesAvailable() {
		t.Skip("sockreap-hook has no createRuntime/poststop stages in this build")
	}
}

func hookStagesAvailable() bool {
	out, _ := exec.Command(hookBin(), "--help").CombinedOutput()
	return bytes.Contains(out, []byte("poststop"))
}

// run runs a command, failing the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// rootfsTar writes a tar of a minimal busybox-static root filesystem.
func rootfsTar(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox-static")
	}
	run(t, "cp", bb, filepath.Join(rootfs, "bin", "busybox"))
	for _, a := range []string{"sh", "sleep", "nc", "ip", "cat", "echo", "true", "false", "ls", "grep", "head"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	tar := filepath.Join(dir, "rootfs.tar")
	run(t, "tar", "-C", rootfs, "-cf", tar, ".")
	return tar
}

// peer is a TCP peer that accepts and never reads, in a netns of its own,
// reached by a container over a veth whose other end the test moves into
// the container's netns. The peer end vanishing is the witness that the
// container's netns was freed.
type peer struct {
	ns      *nettest.Netns
	hostEnd string // veth end in ns
	addr    netip.AddrPort
	ln      *nettest.Socket
	conns   []*nettest.Socket
}

const (
	peerIP      = "192.0.2.1"
	containerIP = "192.0.2.2"
	peerPort    = 8099
)

func newPeer(t *testing.T) *peer {
	t.Helper()
	p := &peer{ns: nettest.NewNetns(t), hostEnd: nettest.Unique("srp"), addr: netip.AddrPortFrom(netip.MustParseAddr(peerIP), peerPort)}
	// A tiny receive buffer closes the window quickly: the container's
	// data then sits in its send queue and its orphan lingers.
	return p
}

// plug links the peer to the netns of process pid and starts listening.
// The container's address comes last: containerCmd connects as soon as it
// sees it, so the link must be up and the peer listening by then (else nc
// fails and the container exits).
func (p *peer) plug(t *testing.T, pid int) {
	t.Helper()
	inner := nettest.Unique("src")
	run(t, "ip", "-n", p.ns.Name, "link", "add", p.hostEnd, "type", "veth", "peer", "name", inner, "netns", strconv.Itoa(pid))
	t.Cleanup(func() { _ = exec.Command("ip", "-n", p.ns.Name, "link", "del", p.hostEnd).Run() })
	run(t, "ip", "-n", p.ns.Name, "addr", "add", peerIP+"/30", "dev", p.hostEnd)
	run(t, "ip", "-n", p.ns.Name, "link", "set", p.hostEnd, "up")
	if p.ln == nil {
		p.ln = p.ns.Listen(t, p.addr, 16, 4096)
	}
	in := []string{"-t", strconv.Itoa(pid), "-n", "ip"}
	run(t, "nsenter", append(in, "link", "set", inner, "up")...)
	run(t, "nsenter", append(in, "addr", "add", containerIP+"/30", "dev", inner)...)
}

// containerCmd waits for the veth address, then streams zeros to the
// peer forever: once the peer's window is shut, the data stays queued.
var containerCmd = []string{"/bin/sh", "-c", fmt.Sprintf(
	"while ! ip addr | grep -q %s; do sleep 0.1; done; exec nc %s %d < /dev/zero", containerIP, peerIP, peerPort)}

// waitStuck waits until the container (process pid) has data queued to the
// peer that the peer does not take, then accepts the connection on the peer
// side (never reading it). Closing the container with data queued leaves
// an orphan that holds its netns.
func (p *peer) waitStuck(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "ss", "-tnH", "state", "established", "dst", p.addr.String()).CombinedOutput()
		if f := strings.Fields(string(out)); len(f) >= 2 {
			if q, _ := strconv.Atoi(f[1]); q > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no data queued from the container to %s: %s", p.addr, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.conns = append(p.conns, nettest.Accept(t, p.ln))
}

// freed reports whether the container's netns is gone (the peer end of
// its veth vanished), waiting up to d for it.
func (p *peer) freed(d time.Duration) (time.Duration, bool) {
	took := nettest.WaitUntil(d, func() bool { return nettest.LinkGone(p.ns, p.hostEnd) })
	return took, took >= 0
}

// freeDeadline is how long after removal the netns may take to go with
// sockreap (see nettest.FreeWait; how soon it goes is measured by make
// bench).
const freeDeadline = nettest.FreeWait

// lingerCheck is how long a netns without sockreap must still be there
// after removal to count as lingering (its orphan lives for minutes).
const lingerCheck = 3 * time.Second

// expectFreed fails unless the netns goes away within freeDeadline; the
// hook log h is shown on failure.
func (p *peer) expectFreed(t *testing.T, what string, h *hookEnv) {
	t.Helper()
	if took, ok := p.freed(freeDeadline); !ok {
		b, _ := os.ReadFile(h.log)
		t.Logf("hook log %s (tail):\n%s", h.log, tail(b, 6))
		later, _ := p.freed(10 * time.Second)
		t.Fatalf("%s: netns still there %v after removal (veth %s in %s remains; gone %v later); sockets in the peer netns:\n%s", what, freeDeadline, p.hostEnd, p.ns.Name, later, strings.Join(p.ns.SS(t), "\n"))
	} else {
		t.Logf("%s: netns freed %v after removal", what, took.Round(time.Millisecond))
	}
}

// expectLingers fails if the netns goes away within lingerCheck.
func (p *peer) expectLingers(t *testing.T, what string) {
	t.Helper()
	if took, ok := p.freed(lingerCheck); ok {
		t.Fatalf("%s: netns freed %v after removal without sockreap: the scenario does not leave an orphan", what, took)
	}
	t.Logf("%s: netns still there %v after removal, as expected without sockreap", what, lingerCheck)
}

// hookEnv is where the hooks injected by the shim keep their pins and
// log in one test: a shim config naming them, so the host's /run/sockreap
// and /var/log/sockreap are never used, nor its node_exporter directory
// (metricsDir does not exist: metrics off).
type hookEnv struct {
	stateDir, log, metricsDir, shimConfig string
}

func newHookEnv(t *testing.T, dir string) *hookEnv {
	t.Helper()
	h := &hookEnv{stateDir: filepath.Join(dir, "state"), log: filepath.Join(dir, "hook.log"),
		metricsDir: filepath.Join(dir, "no-metrics"), shimConfig: filepath.Join(dir, "shim.toml")}
	// The hook makes its pins directory a mount point (like /run/netns).
	t.Cleanup(func() { nettest.UnmountUnder(h.stateDir) })
	conf := fmt.Sprintf("hook_args = [%q, %q, %q, %q, %q, %q]\n", "--state-dir", h.stateDir, "--log", h.log, "--metrics-dir", h.metricsDir)
	if err := os.WriteFile(h.shimConfig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// check fails unless the hook log has a poststop line for container id
// and no pin is left.
func (h *hookEnv) check(t *testing.T, id string) {
	t.Helper()
	b, _ := os.ReadFile(h.log)
	var found bool
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, id) && strings.Contains(l, "poststop") {
			found = true
			t.Logf("hook log: %s", l)
		}
	}
	if !found {
		t.Errorf("hook log %s has no poststop line for %s:\n%s", h.log, id, tail(b, 10))
	}
	if out := run(t, hookBin(), "pins", "--state-dir", h.stateDir); strings.Contains(out, id) {
		t.Errorf("pin of %s left behind:\n%s", id, out)
	}
}

// TestMakeInstall installs into a DESTDIR with another PREFIX and
// uninstalls again: both binaries, the systemd units and the hooks.d files
// pointing at the installed hook.
func TestMakeInstall(t *testing.T) {
	for _, p := range []string{"make", "go"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs %s", p)
		}
	}
	dest := t.TempDir()
	vars := []string{"-C", "../..", "DESTDIR=" + dest, "PREFIX=/opt/sockreap"}
	out := run(t, "make", append(vars, "install")...)
	bin := filepath.Join(dest, "opt/sockreap/bin")
	for _, name := range []string{"sockreap-hook", "sockreap-shim", "sockreap-nri"} {
		if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s not installed as an executable: %v\n%s", name, err, out)
		}
	}
	run(t, filepath.Join(bin, "sockreap-hook"), "version")
	hooks, _ := filepath.Glob(filepath.Join(dest, "etc/containers/oci/hooks.d/*.json"))
	if len(hooks) != 2 {
		t.Fatalf("hooks.d files installed: %v\n%s", hooks, out)
	}
	for _, h := range hooks {
		var doc struct{ Hook struct{ Path string } }
		b, _ := os.ReadFile(h)
		if err := json.Unmarshal(b, &doc); err != nil || doc.Hook.Path != "/opt/sockreap/bin/sockreap-hook" {
			t.Errorf("%s: hook path %q (%v), want the installed one", h, doc.Hook.Path, err)
		}
	}
	units, _ := filepath.Glob("../../deploy/systemd/*")
	for _, u := range units {
		if !strings.HasSuffix(u, ".service") && !strings.HasSuffix(u, ".timer") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dest, "opt/sockreap/lib/systemd/system", filepath.Base(u))); err != nil {
			t.Errorf("unit %s not installed: %v", filepath.Base(u), err)
		}
	}
	run(t, "make", append(vars, "uninstall")...)
	var left []string
	_ = filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("uninstall left files: %v", left)
	}
}

// removeNewEmptyDirs removes, at cleanup, the empty directories dirs
// (deepest first) that the engine creates in fixed host places whatever
// its flags say (/run/containerd/s for shim sockets, /run/containers/...),
// provided the first of them did not exist before the test.
func removeNewEmptyDirs(t *testing.T, dirs ...string) {
	t.Helper()
	if _, err := os.Stat(dirs[0]); err == nil {
		return
	}
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i]) // fails, harmlessly, unless empty
		}
	})
}

// startDaemon starts cmd with its output in logPath, to die with the test
// binary, and waits up to timeout until the probe command succeeds.
func startDaemon(t testing.TB, cmd *exec.Cmd, logPath string, timeout time.Duration, probe *exec.Cmd) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		p := exec.Command(probe.Path, probe.Args[1:]...)
		if p.Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s did not come up within %s:\n%s", cmd.Path, timeout, tail(b, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
