package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/safefs"
)

// startSlack absorbs the rounding of a process's start time (boot time in
// whole seconds, start in clock ticks) when it is compared with the mtime
// of the pid file the process wrote.
const startSlack = 2 * time.Second

// SignalDockerd sends SIGHUP to the dockerd whose pid file is pidfile, and
// to nothing else: the process must be dockerd (its executable or, when
// that cannot be read, its command name), and the pid file must not be
// older than the process (else it is a stale file whose pid now belongs
// to another process). The process is held by a pidfd from the first
// check to the signal, so a pid reused meanwhile gets no signal either.
func SignalDockerd(pidfile string) (int, error) {
	data, err := safefs.ReadFile(pidfile, 64)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds no valid pid (%q)", pidfile, strings.TrimSpace(string(data)))
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return pid, fmt.Errorf("pid %d from %s is not running: %w", pid, pidfile, err)
		}
		return pid, fmt.Errorf("open pid %d from %s: %w", pid, pidfile, err)
	}
	defer unix.Close(pidfd)
	if err := isDockerd(pid); err != nil {
		return pid, fmt.Errorf("pid %d from %s %v; not signalled (a stale pid file? pass dockerd's --pidfile)", pid, pidfile, err)
	}
	started, err := startTime(pid)
	if err != nil {
		return pid, fmt.Errorf("pid %d from %s: %w; not signalled", pid, pidfile, err)
	}
	fi, err := os.Lstat(pidfile)
	if err != nil {
		return pid, fmt.Errorf("pid file %s: %w", pidfile, err)
	}
	if fi.ModTime().Before(started.Add(-startSlack)) {
		return pid, fmt.Errorf("pid file %s (written %s) is older than process %d (started %s): stale, not signalled; pass dockerd's --pidfile",
			pidfile, fi.ModTime().UTC().Format(time.RFC3339), pid, started.UTC().Format(time.RFC3339))
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGHUP, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return pid, fmt.Errorf("dockerd (pid %d from %s) exited: %w", pid, pidfile, err)
		}
		return pid, fmt.Errorf("signal dockerd (pid %d from %s): %w", pid, pidfile, err)
	}
	return pid, nil
}

// isDockerd checks that pid runs dockerd.
func isDockerd(pid int) error {
	proc := "/proc/" + strconv.Itoa(pid)
	if exe, err := os.Readlink(proc + "/exe"); err == nil {
		name := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if name != "dockerd" {
			return fmt.Errorf("runs %q, not dockerd", exe)
		}
		return nil
	}
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil {
		return fmt.Errorf("cannot be identified: %w", err)
	}
	if c := string(bytes.TrimSpace(comm)); c != "dockerd" {
		return fmt.Errorf("is %q, not dockerd", c)
	}
	return nil
}

// startTime is when process pid started: its start in clock ticks after
// boot (/proc/PID/stat) plus the boot time (/proc/stat btime).
func startTime(pid int) (time.Time, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, fmt.Errorf("read start time: %w", err)
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, errors.New("unreadable /proc stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return time.Time{}, errors.New("unreadable /proc stat")
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}, fmt.Errorf("unreadable start time: %w", err)
	}
	all, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(all), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			btime, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				break
			}
			// USER_HZ is 100 on every Linux architecture Go supports.
			return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / 100), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}
