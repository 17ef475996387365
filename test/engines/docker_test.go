package engines

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
)

// dockerd is a Docker daemon of the test's own: its own data root, exec
// root (with its own managed containerd), pid file, socket and config
// file; no bridge, no iptables.
type dockerd struct {
	dir, config, pidfile, host, execRoot string
	cmd                                  *exec.Cmd
	hooks                                *hookEnv
}

func startDockerd(t *testing.T, daemonJSON map[string]any) *dockerd {
	t.Helper()
	need(t, "dockerd", "docker")
	// Short: the managed containerd's socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "srd")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{dir: dir, config: filepath.Join(dir, "daemon.json"), pidfile: filepath.Join(dir, "docker.pid"),
		host: "unix://" + filepath.Join(dir, "docker.sock"), execRoot: filepath.Join(dir, "x")}
	removeNewEmptyDirs(t, "/run/containerd", "/run/containerd/s")
	t.Cleanup(func() { d.cleanup(t) })
	// Without it dockerd 20.10 writes its trust key to /etc/docker.
	daemonJSON["deprecated-key-path"] = filepath.Join(dir, "key.json")
	// The hooks keep their pins and log in this test's own directory:
	// runtimeArgs (which configure docker must keep) point the shim at
	// a config that says so.
	d.hooks = newHookEnv(t, dir)
	daemonJSON["runtimes"] = map[string]any{
		"sockreap": map[string]any{"runtimeArgs": []string{"--sockreap-config=" + d.hooks.shimConfig}},
		// A shim told to run a runtime that is not there: its error must
		// reach the docker client.
		"sockreap-broken": map[string]any{"path": shimBin(), "runtimeArgs": []string{"--sockreap-runtime=/nonexistent/runc"}},
	}
	writeJSON(t, d.config, daemonJSON)
	d.cmd = exec.Command("dockerd", "--config-file", d.config, "--data-root", filepath.Join(dir, "data"),
		"--exec-root", d.execRoot, "--pidfile", d.pidfile, "-H", d.host,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--userland-proxy=false")
	startDaemon(t, d.cmd, filepath.Join(dir, "dockerd.log"), 60*time.Second, exec.Command("docker", "-H", d.host, "version"))
	return d
}

func (d *dockerd) cleanup(t *testing.T) {
	if d.cmd != nil && d.cmd.Process != nil {
		if out, err := exec.Command("docker", "-H", d.host, "ps", "-aq").Output(); err == nil {
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				_ = exec.Command("docker", append([]string{"-H", d.host, "rm", "-f"}, ids...)...).Run()
			}
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			t.Logf("dockerd log (tail):\n%s", tail(b, 40))
		}
	}
	// dockerd unmounts its own mounts on exit; anything left is lazily
	// detached so the directory can go.
	nettest.UnmountUnder(d.dir)
	_ = os.RemoveAll(d.dir)
}

func (d *dockerd) docker(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "docker", append([]string{"-H", d.host}, args...)...)
}

// importImage makes the busybox image from the rootfs tar.
func (d *dockerd) importImage(t *testing.T) string {
	t.Helper()
	ref := "sockreap-test/busybox:" + nettest.Unique("t")
	d.docker(t, "import", "--change", "CMD [\"/bin/sh\"]", rootfsTar(t), ref)
	return ref
}

func (d *dockerd) pid(t *testing.T, id string) int {
	t.Helper()
	pid, err := strconv.Atoi(d.docker(t, "inspect", "-f", "{{.State.Pid}}", id))
	if err != nil || pid <= 0 {
		t.Fatalf("pid of container %s: %d %v", id, pid, err)
	}
	return pid
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// configureDocker runs "sockreap-hook configure docker" on d's config file.
func (d *dockerd) configure(t *testing.T, extra ...string) string {
	t.Helper()
	return run(t, hookBin(), append([]string{"configure", "docker", "--config", d.config, "--shim", shimBin(), "--pidfile", d.pidfile}, extra...)...)
}

// orphanRun starts a container that streams to a non-reading peer and
// waits until its data is stuck; it returns the container id.
func (d *dockerd) orphanRun(t *testing.T, p *peer, image string, runArgs ...string) string {
	t.Helper()
	args := append([]string{"run", "-d", "--network", "none"}, runArgs...)
	args = append(append(args, image), containerCmd...)
	id := d.docker(t, args...)
	pid := d.pid(t, id)
	p.plug(t, pid)
	p.waitStuck(t, pid)
	return id
}

func TestDockerOrphan(t *testing.T) {
	d := startDockerd(t, map[string]any{"log-level": "warn"})
	out := d.configure(t, "--reload")
	t.Logf("configure docker:\n%s", out)
	var cfg map[string]any
	b, _ := os.ReadFile(d.config)
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["log-level"] != "warn" {
		t.Fatalf("configure docker lost a key: %s", b)
	}
	waitRuntime(t, d, "sockreap")
	image := d.importImage(t)

	t.Run("with sockreap", func(t *testing.T) {
		p := newPeer(t)
		id := d.orphanRun(t, p, image, "--runtime", "sockreap")
		if out := run(t, hookBin(), "pins", "--state-dir", d.hooks.stateDir); !strings.Contains(out, id) {
			t.Errorf("sockreap-hook pins does not list the running container %s:\n%s", id, out)
		}
		d.docker(t, "rm", "-f", id)
		p.expectFreed(t, "docker --runtime sockreap", d.hooks)
		d.hooks.check(t, id)
	})
	t.Run("without sockreap", func(t *testing.T) {
		p := newPeer(t)
		id := d.orphanRun(t, p, image)
		d.docker(t, "rm", "-f", id)
		p.expectLingers(t, "docker default runtime (runc)")
	})
	t.Run("shared netns", func(t *testing.T) {
		// The first container owns the netns; the second joins it with
		// --network container:X and leaves the orphan. Removing the joiner
		// must drain nothing (the owner still runs there); removing the
		// owner drains and frees the netns.
		p := newPeer(t)
		owner := d.docker(t, "run", "-d", "--network", "none", "--runtime", "sockreap", image, "sleep", "1000")
		p.plug(t, d.pid(t, owner))
		joiner := d.docker(t, "run", "-d", "--network", "container:"+owner, "--runtime", "sockreap", image, "/bin/sh", "-c",
			"exec nc "+peerIP+" 8099 < /dev/zero")
		p.waitStuck(t, d.pid(t, joiner))
		d.docker(t, "rm", "-f", joiner)
		ownerPid := d.pid(t, owner)
		if n := orphansTo(t, ownerPid, p); n == 0 {
			t.Fatalf("the joiner's orphan was drained although the owner container still runs in the netns")
		}
		if nettest.LinkGone(p.ns, p.hostEnd) {
			t.Fatal("netns gone while its owner container runs")
		}
		d.docker(t, "rm", "-f", owner)
		p.expectFreed(t, "docker --network container:X, owner removed last", d.hooks)
		d.hooks.check(t, joiner)
		d.hooks.check(t, owner)
	})
	t.Run("runtime missing", func(t *testing.T) {
		out, err := exec.Command("docker", "-H", d.host, "run", "--rm", "--network", "none", "--runtime", "sockreap-broken", image, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), `real runtime "/nonexistent/runc" not found`) {
			t.Errorf("docker run with a shim that finds no runtime: %v\n%s", err, out)
		} else {
			t.Logf("docker says: %s", strings.TrimSpace(string(out)))
		}
	})
	t.Run("set-default", func(t *testing.T) {
		out := d.configure(t, "--set-default", "--reload")
		t.Logf("configure docker --set-default:\n%s", out)
		deadline := time.Now().Add(30 * time.Second)
		for d.docker(t, "info", "--format", "{{.DefaultRuntime}}") != "sockreap" {
			if time.Now().After(deadline) {
				t.Fatal("dockerd did not switch its default runtime to sockreap after SIGHUP")
			}
			time.Sleep(100 * time.Millisecond)
		}
		p := newPeer(t)
		id := d.orphanRun(t, p, image) // no --runtime: the default
		d.docker(t, "rm", "-f", id)
		p.expectFreed(t, "docker default-runtime sockreap", d.hooks)
		d.hooks.check(t, id)
		if again := d.configure(t, "--set-default"); !strings.Contains(again, "already configured") {
			t.Errorf("second configure changed the file again:\n%s", again)
		}
	})
}

// waitRuntime waits until dockerd lists runtime name (after SIGHUP).
func waitRuntime(t *testing.T, d *dockerd, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.docker(t, "info", "--format", "{{json .Runtimes}}"), `"`+name+`"`) {
		if time.Now().After(deadline) {
			t.Fatalf("dockerd does not list runtime %s after configure --reload", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// orphansTo counts the TCP sockets in the netns of pid connected to the peer.
func orphansTo(t *testing.T, pid int, p *peer) int {
	t.Helper()
	out := run(t, "nsenter", "-t", strconv.Itoa(pid), "-n", "ss", "-tanH", "dst", p.addr.String())
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}
