package engines

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
)

// podman runs with storage, run and tmp dirs of the test's own and the
// hooks.d directory written by "configure hooksd". On this kind of host
// (cgroup v1 hybrid layout, raising rlimits forbidden) it must use runc
// and explicit low ulimits; crun refuses the hybrid layout.
type podman struct {
	dir, hooksDir string
	global        []string
	hooks         *hookEnv
}

// podmanUlimits keep podman from raising the container's limits to the
// host maximum, which this machine forbids ("error setting rlimit type 7:
// operation not permitted").
var podmanUlimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

func newPodman(t *testing.T) *podman {
	t.Helper()
	need(t, "podman", "runc", "conmon")
	dir, err := os.MkdirTemp("", "srp")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{dir: dir, hooksDir: filepath.Join(dir, "hooks.d")}
	p.hooks = newHookEnv(t, dir)
	p.global = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--network-config-dir", filepath.Join(dir, "networks"), "--volumepath", filepath.Join(dir, "volumes"),
		"--hooks-dir", p.hooksDir, "--runtime", "runc"}
	removeNewEmptyDirs(t, "/run/containers", "/run/containers/networks")
	t.Cleanup(func() {
		_ = exec.Command("podman", append(p.global, "rm", "-af", "-t", "0")...).Run()
		// Not "system reset": that also clears shared places (networks).
		_ = exec.Command("podman", append(p.global, "rmi", "-af")...).Run()
		nettest.UnmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	return p
}

func (p *podman) podman(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "podman", append(p.global, args...)...)
}

func TestPodmanHooksD(t *testing.T) {
	pm := newPodman(t)
	out := run(t, hookBin(), "configure", "hooksd", "--dir", pm.hooksDir, "--hook", hookBin(),
		"--hook-arg=--state-dir="+pm.hooks.stateDir, "--hook-arg=--log="+pm.hooks.log, "--hook-arg=--metrics-dir="+pm.hooks.metricsDir)
	t.Logf("configure hooksd:\n%s", out)
	image := "localhost/sockreap-test/busybox:" + nettest.Unique("t")
	pm.podman(t, "import", rootfsTar(t), image)

	orphan := func(t *testing.T, p *peer, extra ...string) string {
		args := append([]string{"run", "-d", "--network", "none"}, podmanUlimits...)
		args = append(append(append(args, extra...), image), containerCmd...)
		id := pm.podman(t, args...)
		pid, err := strconv.Atoi(pm.podman(t, "inspect", "-f", "{{.State.Pid}}", id))
		if err != nil {
			t.Fatal(err)
		}
		p.plug(t, pid)
		p.waitStuck(t, pid)
		return id
	}
	t.Run("hooks.d", func(t *testing.T) {
		p := newPeer(t)
		id := orphan(t, p)
		pm.podman(t, "rm", "-f", "-t", "0", id)
		p.expectFreed(t, "podman with the sockreap hooks.d files", pm.hooks)
		pm.hooks.check(t, id)
		if b, _ := os.ReadFile(pm.hooks.log); !strings.Contains(string(b), `"pin":"`+pm.hooks.stateDir) {
			t.Errorf("the drain did not go through the pin")
		}
	})
	t.Run("shim and hooks.d together", func(t *testing.T) {
		// podman --runtime sockreap-shim on top of the hooks.d files: each
		// hook is in config.json once, and the netns is freed. (podman
		// keeps hooks.d poststop hooks out of config.json and runs them
		// itself, so poststop runs twice here: the second run finds no
		// pin and logs "nothing to drain". Use one of the two.)
		p := newPeer(t)
		saved := pm.global
		pm.global = append(append([]string{}, saved...), "--runtime", shimBin(), "--runtime-flag", "sockreap-config="+pm.hooks.shimConfig)
		defer func() { pm.global = saved }()
		id := orphan(t, p)
		var spec struct {
			Hooks map[string][]struct{ Path string } `json:"hooks"`
		}
		b, err := os.ReadFile(filepath.Join(pm.dir, "root", "overlay-containers", id, "userdata", "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatal(err)
		}
		for _, stage := range []string{"createRuntime", "poststop"} {
			n := 0
			for _, h := range spec.Hooks[stage] {
				if h.Path == hookBin() {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d sockreap hooks at %s in config.json, want 1: %v", n, stage, spec.Hooks)
			}
		}
		pm.podman(t, "rm", "-f", "-t", "0", id)
		p.expectFreed(t, "podman --runtime sockreap-shim with hooks.d", pm.hooks)
		pm.hooks.check(t, id)
	})
	t.Run("opt-out annotation", func(t *testing.T) {
		p := newPeer(t)
		id := orphan(t, p, "--annotation", "io.sockreap.drain=false")
		pm.podman(t, "rm", "-f", "-t", "0", id)
		p.expectLingers(t, "podman, container opted out with io.sockreap.drain=false")
	})
}
