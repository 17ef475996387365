package engines

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDockerReloadSignalsOnlyDockerd: configure docker --reload signals
// the real dockerd when daemon.json changed, nothing when it did not, and
// never the unrelated process a stale pid file names.
func TestDockerReloadSignalsOnlyDockerd(t *testing.T) {
	d := startDockerd(t, map[string]any{})

	// A stale pid file: its pid now belongs to a sleep.
	sleep := exec.Command("sleep", "1000")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	stale := filepath.Join(t.TempDir(), "docker.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hookBin(), "configure", "docker", "--config", d.config, "--shim", shimBin(), "--pidfile", stale, "--reload")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not dockerd") {
		t.Errorf("reload through a stale pid file: %v\n%s", err, out)
	}
	if sleep.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatal("the process named by a stale pid file was signalled")
	}

	// daemon.json was written above but dockerd was not told: the real
	// pid file gets it. Unchanged now, so the next run signals nothing.
	if err := os.WriteFile(d.config, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := d.configure(t, "--reload"); !strings.Contains(out, "sent SIGHUP to dockerd") {
		t.Errorf("reload after a change:\n%s", out)
	}
	waitRuntime(t, d, "sockreap")
	if out := d.configure(t, "--reload"); !strings.Contains(out, "not signalled") || strings.Contains(out, "sent SIGHUP") {
		t.Errorf("reload without a change:\n%s", out)
	}
	if d.cmd.ProcessState != nil {
		t.Fatal("dockerd exited")
	}
}
