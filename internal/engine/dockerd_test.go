package engine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sleeper starts a long sleep from a copy of sleep named name, so that its
// executable's name is name.
func sleeper(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	bin := filepath.Join(t.TempDir(), name)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func pidfile(t *testing.T, pid int, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docker.pid")
	if err := os.WriteFile(p, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func alive(cmd *exec.Cmd) bool { return cmd.Process.Signal(syscall.Signal(0)) == nil }

// TestSignalDockerd: a pid file naming a process that is not dockerd, or
// older than the process, gets no signal; a fresh one naming dockerd does.
func TestSignalDockerd(t *testing.T) {
	other := sleeper(t, "sleep")
	if _, err := SignalDockerd(pidfile(t, other.Process.Pid, time.Time{})); err == nil || !strings.Contains(err.Error(), "not dockerd") {
		t.Errorf("pid file naming sleep: %v", err)
	}
	d := sleeper(t, "dockerd")
	if _, err := SignalDockerd(pidfile(t, d.Process.Pid, time.Now().Add(-time.Hour))); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("pid file older than the process: %v", err)
	}
	real := pidfile(t, d.Process.Pid, time.Time{})
	link := filepath.Join(t.TempDir(), "docker.pid")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := SignalDockerd(link); err == nil {
		t.Error("a symlinked pid file was followed")
	}
	if !alive(other) || !alive(d) {
		t.Fatal("a refused signal was sent")
	}
	if pid, err := SignalDockerd(real); err != nil || pid != d.Process.Pid {
		t.Fatalf("SignalDockerd: %d, %v", pid, err)
	}
	err := d.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
		t.Errorf("dockerd stand-in ended with %v, want SIGHUP", err)
	}
	if _, err := SignalDockerd(real); err == nil {
		t.Error("signalled a pid that exited")
	}
}
