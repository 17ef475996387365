package engines

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sockreap/sockreap/internal/nettest"
)

// containerd is a containerd of the test's own: root, state, sockets and
// config file in a temporary directory; a namespace and runc root unique
// to the test on top.
type containerd struct {
	dir, config, sock, ns, runcRoot string
	cmd                             *exec.Cmd
	hooks                           *hookEnv
}

func newContainerd(t *testing.T) *containerd {
	t.Helper()
	need(t, "containerd", "ctr", "containerd-shim-runc-v2", "runc")
	dir, err := os.MkdirTemp("", "srk")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{dir: dir, config: filepath.Join(dir, "config.toml"), sock: filepath.Join(dir, "c.sock"),
		ns: nettest.Unique("sockreap-test"), runcRoot: filepath.Join(dir, "runc")}
	c.hooks = newHookEnv(t, dir)
	removeNewEmptyDirs(t, "/run/containerd", "/run/containerd/s")
	t.Cleanup(func() { c.cleanup(t) })
	// The operator's file before sockreap: configure must keep all of it.
	base := fmt.Sprintf(`version = 2
root = %q
state = %q
oom_score = 0

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      NoPivotRoot = false
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(c.config, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *containerd) start(t *testing.T) {
	t.Helper()
	c.cmd = exec.Command("containerd", "--config", c.config)
	// The shim reads its config from the environment containerd hands
	// down to containerd-shim-runc-v2 and the runtime.
	c.cmd.Env = append(os.Environ(), "SOCKREAP_SHIM_CONFIG="+c.hooks.shimConfig)
	startDaemon(t, c.cmd, filepath.Join(c.dir, "containerd.log"), 30*time.Second, exec.Command("ctr", "-a", c.sock, "version"))
}

func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ctr", append([]string{"-a", c.sock, "-n", c.ns}, args...)...)
}

// stop stops the daemon (containers keep running, as with systemctl restart).
func (c *containerd) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// expectCRI fails unless containerd loaded its CRI plugin.
func (c *containerd) expectCRI(t *testing.T) {
	t.Helper()
	for _, l := range strings.Split(run(t, "ctr", "-a", c.sock, "plugins", "ls"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "cri" {
			if f[len(f)-1] != "ok" {
				b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
				t.Fatalf("CRI plugin not loaded with the sockreap config: %s\n%s", l, tail(b, 20))
			}
			return
		}
	}
	t.Fatal("containerd lists no cri plugin")
}

func (c *containerd) cleanup(t *testing.T) {
	if c.cmd != nil && c.cmd.Process != nil {
		ctr := func(args ...string) string {
			out, _ := exec.Command("ctr", append([]string{"-a", c.sock, "-n", c.ns}, args...)...).Output()
			return string(out)
		}
		for _, l := range strings.Split(ctr("task", "ls", "-q"), "\n") {
			if id := strings.TrimSpace(l); id != "" {
				ctr("task", "delete", "--force", id)
			}
		}
		for _, l := range strings.Split(ctr("container", "ls", "-q"), "\n") {
			if id := strings.TrimSpace(l); id != "" {
				ctr("container", "delete", id)
			}
		}
		for _, l := range strings.Split(ctr("image", "ls", "-q"), "\n") {
			if ref := strings.TrimSpace(l); ref != "" {
				ctr("image", "rm", "--sync", ref)
			}
		}
		c.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
			t.Logf("containerd log (tail):\n%s", tail(b, 40))
		}
	}
	nettest.UnmountUnder(c.dir)
	_ = os.RemoveAll(c.dir)
}

// importImage imports the busybox rootfs as a one-layer OCI image.
func (c *containerd) importImage(t *testing.T) string {
	t.Helper()
	ref := "docker.io/sockreap-test/busybox:" + nettest.Unique("t")
	c.ctr(t, "image", "import", ociArchive(t, rootfsTar(t), ref))
	return ref
}

// ociArchive wraps a rootfs tar into an OCI image layout tar (what
// "ctr image import" reads), named ref.
func ociArchive(t *testing.T, layerPath, ref string) string {
	t.Helper()
	layer, err := os.ReadFile(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	config := mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer)}},
	})
	manifest := mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}},
	})
	index := mustJSON(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
		}},
	})
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for _, b := range [][]byte{layer, config, manifest} {
		add("blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// taskPid returns the pid of the task of container id.
func (c *containerd) taskPid(t *testing.T, id string) int {
	t.Helper()
	for _, l := range strings.Split(c.ctr(t, "task", "ls"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
				return pid
			}
		}
	}
	t.Fatalf("no running task %s", id)
	return 0
}

// remove kills the task, deletes it (runc delete: the poststop hook) and
// the container.
func (c *containerd) remove(t *testing.T, id string) {
	t.Helper()
	c.ctr(t, "task", "delete", "--force", id)
	c.ctr(t, "container", "delete", id)
}

func TestContainerdOrphan(t *testing.T) {
	c := newContainerd(t)
	out := run(t, hookBin(), "configure", "containerd", "--config", c.config, "--shim", shimBin(), "--reload")
	t.Logf("configure containerd:\n%s", out)
	if again := run(t, hookBin(), "configure", "containerd", "--config", c.config, "--shim", shimBin()); !strings.Contains(again, "already configured") {
		t.Errorf("second configure changed the file:\n%s", again)
	}
	c.start(t)

	// containerd itself must read the handler as written, with runc's
	// options copied over.
	var dump map[string]any
	if err := toml.Unmarshal([]byte(run(t, "containerd", "--config", c.config, "config", "dump")), &dump); err != nil {
		t.Fatalf("containerd config dump: %v", err)
	}
	rt, _ := dig(dump, "plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "sockreap").(map[string]any)
	if rt == nil || rt["runtime_type"] != "io.containerd.runc.v2" || dig(rt, "options", "BinaryName") != shimBin() {
		t.Fatalf("containerd does not see the sockreap runtime handler: %v", rt)
	}
	if dig(dump, "oom_score") == nil || dig(dump, "plugins", "io.containerd.internal.v1.opt", "path") != filepath.Join(c.dir, "opt") {
		t.Errorf("keys of the operator's config lost")
	}

	c.expectCRI(t)
	image := c.importImage(t)
	runOrphan := func(t *testing.T, p *peer, runtimeArgs ...string) string {
		id := nettest.Unique("srk")
		// Own runc root and FIFO dir: nothing under the host's /run/containerd.
		args := append([]string{"run", "-d", "--runc-root", c.runcRoot, "--fifo-dir", filepath.Join(c.dir, "fifo")}, runtimeArgs...)
		args = append(append(args, image, id), containerCmd...)
		c.ctr(t, args...)
		pid := c.taskPid(t, id)
		p.plug(t, pid)
		p.waitStuck(t, pid)
		return id
	}
	t.Run("ctr --runc-binary sockreap-shim", func(t *testing.T) {
		p := newPeer(t)
		id := runOrphan(t, p, "--runtime", "io.containerd.runc.v2", "--runc-binary", shimBin())
		c.remove(t, id)
		p.expectFreed(t, "containerd with sockreap-shim", c.hooks)
		c.hooks.check(t, id)
	})
	t.Run("ctr plain runc", func(t *testing.T) {
		p := newPeer(t)
		id := runOrphan(t, p)
		c.remove(t, id)
		p.expectLingers(t, "containerd with plain runc")
	})
	t.Run("set-default", func(t *testing.T) {
		out := run(t, hookBin(), "configure", "containerd", "--config", c.config, "--shim", shimBin(), "--set-default")
		t.Logf("configure containerd --set-default:\n%s", out)
		var dump map[string]any
		if err := toml.Unmarshal([]byte(run(t, "containerd", "--config", c.config, "config", "dump")), &dump); err != nil {
			t.Fatalf("containerd config dump: %v", err)
		}
		if got := dig(dump, "plugins", "io.containerd.grpc.v1.cri", "containerd", "default_runtime_name"); got != "sockreap" {
			t.Errorf("containerd's CRI default runtime is %v, want sockreap", got)
		}
		if dig(dump, "plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc", "options", "SystemdCgroup") != false {
			t.Errorf("the runc handler changed")
		}
		// Restart as the command tells; the CRI plugin must load with
		// sockreap as its default runtime.
		c.stop()
		c.start(t)
		c.expectCRI(t)
	})
}

// dig walks nested maps.
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
