package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/testbin"
	"golang.org/x/sys/unix"
)

// hook runs sockreap-hook with the state on stdin (nil: none).
func hook(t *testing.T, state any, args ...string) result {
	t.Helper()
	cmd := exec.Command(testbin.Path("sockreap-hook"), args...)
	if state != nil {
		b, err := json.Marshal(state)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(b)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// stateDir returns a fresh state directory whose pins are unmounted at
// cleanup.
func stateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() {
		ents, _ := os.ReadDir(filepath.Join(dir, "pins"))
		for _, e := range ents {
			_ = unix.Unmount(filepath.Join(dir, "pins", e.Name()), unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		_ = unix.Unmount(filepath.Join(dir, "pins"), unix.MNT_DETACH)
	})
	return dir
}

// TestGCLeavesSymlinkTargetAlone: a symlink planted in pins/ that points
// at another namespace mount is no pin: gc neither drains nor unmounts
// what it points to.
func TestGCLeavesSymlinkTargetAlone(t *testing.T) {
	nettest.RequireRoot(t)
	// A namespace with no process inside, kept by its mount alone: gc
	// would judge the container gone.
	foreign := nettest.NewNetns(t)
	dir := stateDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "pins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(foreign.Path, filepath.Join(dir, "pins", "planted")); err != nil {
		t.Fatal(err)
	}
	r := hook(t, nil, "gc", "--state-dir", dir, "--min-age", "0", "--log", filepath.Join(t.TempDir(), "log"))
	t.Logf("gc: %s%s", r.stdout, r.stderr)
	if !netns.IsNsfs(foreign.Path) || !isMountPoint(t, foreign.Path) {
		t.Fatalf("gc unmounted %s through a symlink in pins/", foreign.Path)
	}
	if strings.Contains(r.stdout, "drained") {
		t.Errorf("gc drained the namespace a symlink in pins/ points at: %s", r.stdout)
	}
	if _, err := os.Lstat(filepath.Join(dir, "pins", "planted")); err == nil {
		t.Errorf("the planted symlink was left in pins/")
	}
}

// TestCreateRuntimeDoesNotMountOverSymlinkTarget: createRuntime replaces
// a symlink at the pin's name and never mounts over its target.
func TestCreateRuntimeDoesNotMountOverSymlinkTarget(t *testing.T) {
	nettest.RequireRoot(t)
	n := nettest.NewNetns(t)
	pid := n.Start(t, "sleep", "60").Process.Pid
	dir := stateDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "pins"), 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := nettest.Unique("sym")
	if err := os.Symlink(victim, filepath.Join(dir, "pins", id)); err != nil {
		t.Fatal(err)
	}
	state := map[string]any{"ociVersion": "1.0.2", "id": id, "status": "created", "pid": pid, "bundle": t.TempDir()}
	r := hook(t, state, "createRuntime", "--state-dir", dir, "--log", filepath.Join(t.TempDir(), "log"), "--strict")
	if r.code != 0 {
		t.Fatalf("createRuntime: %d %s", r.code, r.stderr)
	}
	if isMountPoint(t, victim) || netns.IsNsfs(victim) {
		t.Fatalf("createRuntime mounted the namespace over the symlink's target %s", victim)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	pinPath := filepath.Join(dir, "pins", id)
	if fi, err := os.Lstat(pinPath); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Fatalf("pin %s: %v %v, want a real pin", pinPath, fi, err)
	}
	if got, err := netns.IDOf(pinPath); err != nil || got != n.NS.ID {
		t.Errorf("pin holds %v (%v), want %v", got, err, n.NS.ID)
	}
	if r := hook(t, state, "poststop", "--state-dir", dir, "--log", filepath.Join(t.TempDir(), "log")); r.code != 0 {
		t.Errorf("poststop: %d %s", r.code, r.stderr)
	}
}

// TestRefusesUnsafeStateAndLog: a log path that is a symlink, and a state
// directory others can write, are refused with a message naming them.
func TestRefusesUnsafeStateAndLog(t *testing.T) {
	nettest.RequireRoot(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "sockreap.log")
	if err := os.Symlink(victim, log); err != nil {
		t.Fatal(err)
	}
	dir := stateDir(t)
	r := hook(t, nil, "gc", "--state-dir", dir, "--log", log)
	if b, _ := os.ReadFile(victim); len(b) != 0 {
		t.Errorf("the log was written through a symlink into %s: %s", victim, b)
	}
	if !strings.Contains(r.stderr, "refusing log file "+log) || !strings.Contains(r.stderr, "symlink") {
		t.Errorf("no refusal of the symlinked log: %s", r.stderr)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	r = hook(t, nil, "gc", "--state-dir", open, "--log", filepath.Join(t.TempDir(), "log"))
	if r.code == 0 || !strings.Contains(r.stderr, open) || !strings.Contains(r.stderr, "writable by others") {
		t.Errorf("gc on a world-writable state directory: %d %s", r.code, r.stderr)
	}
	fresh := stateDir(t)
	n := nettest.NewNetns(t)
	state := map[string]any{"ociVersion": "1.0.2", "id": nettest.Unique("st"), "status": "created", "pid": n.Start(t, "sleep", "60").Process.Pid, "bundle": t.TempDir()}
	if r := hook(t, state, "createRuntime", "--state-dir", fresh, "--log", filepath.Join(t.TempDir(), "log"), "--strict"); r.code != 0 {
		t.Fatalf("createRuntime: %d %s", r.code, r.stderr)
	}
	for _, d := range []string{fresh, filepath.Join(fresh, "pins"), filepath.Join(fresh, "meta")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi.Mode().Perm(), err)
		}
	}
	_ = hook(t, state, "poststop", "--state-dir", fresh, "--log", filepath.Join(t.TempDir(), "log"))
}

// isMountPoint reports whether path is a mount point per mountinfo.
func isMountPoint(t *testing.T, path string) bool {
	t.Helper()
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
