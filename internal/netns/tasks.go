package netns

// Threads and descriptors of processes, read from /proc. A process is in a
// namespace when any of its threads is: setns(2) moves one thread, so a
// program whose worker thread entered a namespace (a CNI plugin, a runtime
// daemon, a debugger) shows its own namespace at /proc/PID/ns/net and the
// other one only at /proc/PID/task/TID/ns/net. A socket belongs to the
// namespace it was created in, whatever namespace its holder is in now.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrGone is returned for a process or thread that exited while it was
// being read.
var ErrGone = errors.New("process exited")

// gone maps the errors of a vanished process to ErrGone.
func gone(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	return err
}

// PIDs lists the processes in /proc.
func PIDs() ([]int, error) {
	pids, err := allPids()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	return pids, nil
}

// Threads lists the thread ids of process pid, the leader's included.
func Threads(pid int) ([]int, error) {
	d, err := os.Open("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, gone(err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, gone(err)
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			tids = append(tids, tid)
		}
	}
	if len(tids) == 0 {
		return nil, ErrGone
	}
	return tids, nil
}

// In reports whether thread tid of process pid is in the namespace id.
// A thread that exited gives ErrGone; one that may not be inspected
// (EACCES) gives that error.
func In(id ID, pid, tid int) (bool, error) {
	var st unix.Stat_t
	err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/task/"+strconv.Itoa(tid)+"/ns/net", &st)
	if err != nil {
		return false, gone(err)
	}
	return uint64(st.Dev) == id.Dev && st.Ino == id.Ino, nil
}

// kcmpFiles is KCMP_FILES of kcmp(2): do two tasks share a descriptor table.
const kcmpFiles = 2

// OwnFiles reports whether thread tid has a descriptor table other than
// its process leader's (it called unshare(CLONE_FILES)), so that sockets it
// holds are not listed under /proc/PID/fd. Where kcmp(2) is missing it
// answers true: the caller then reads that thread's table too.
func OwnFiles(pid, tid int) (bool, error) {
	if pid == tid {
		return false, nil
	}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(tid), kcmpFiles, 0, 0, 0)
	switch {
	case errno == unix.ENOSYS:
		return true, nil
	case errno != 0:
		return false, gone(errno)
	}
	return r != 0, nil
}

// HeldSockets returns the socket inodes for which want is true among the
// descriptors of thread tid of process pid (its descriptor table, which
// all threads that did not unshare it share).
func HeldSockets(pid, tid int, want func(inode uint64) bool) ([]uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return nil, gone(err)
	}
	fds, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, gone(err)
	}
	var held []uint64
	buf := make([]byte, 64)
	for _, fd := range fds {
		n, err := unix.Readlink(dir+fd, buf)
		if err != nil {
			continue // closed meanwhile
		}
		link := string(buf[:n])
		if !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 64)
		if err == nil && want(ino) {
			held = append(held, ino)
		}
	}
	return held, nil
}
