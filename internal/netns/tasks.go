package netns

// Threads and descriptors of processes, read from /proc. A process is in a
// namespace when any of its threads is: setns(2) moves one thread, so a
// program whose worker thread entered a namespace (a CNI plugin, a runtime
// daemon, a debugger) shows its own namespace at /proc/PID/ns/net and the
// other one only at /proc/PID/task/TID/ns/net. A socket belongs to the
// namespace it was created in, whatever namespace its holder is in now.

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	tids, err := readDirInts("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, gone(err)
	}
	if len(tids) == 0 {
		return nil, ErrGone
	}
	return tids, nil
}

// readDirInts lists the numeric names in dir. It reads the directory with
// getdents directly: os.File's directory reading costs extra system calls
// and allocations per directory, and a scan reads one per process.
func readDirInts(dir string) ([]int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var (
		buf  [8192]byte
		ints []int
	)
	for {
		n, err := unix.ReadDirent(fd, buf[:])
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return ints, nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen <= 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			v, ok := 0, len(name) > 0 && name[0] != 0
			for _, c := range name {
				if c == 0 {
					break
				}
				if c < '0' || c > '9' {
					ok = false
					break
				}
				v = v*10 + int(c-'0')
			}
			if ok {
				ints = append(ints, v)
			}
			b = b[reclen:]
		}
	}
}

// In reports whether thread tid of process pid is in the namespace id.
// A thread that exited gives ErrGone; one that may not be inspected
// (EACCES) gives that error. It reads the link's name, net:[inode], rather
// than following it: every namespace file lives on the one nsfs, so the
// inode names it, and readlink costs half a stat of the namespace.
func In(id ID, pid, tid int) (bool, error) {
	var buf, wb [32]byte
	n, err := unix.Readlink(nsPath(pid, tid), buf[:])
	if err != nil {
		return false, gone(err)
	}
	want := append(wb[:0], "net:["...) // compare without allocating
	want = strconv.AppendUint(want, id.Ino, 10)
	want = append(want, ']')
	return string(buf[:n]) == string(want), nil
}

// nsName is the name of thread tid's network namespace link, net:[inode].
func nsName(pid, tid int) (string, error) {
	var buf [32]byte
	n, err := unix.Readlink(nsPath(pid, tid), buf[:])
	if err != nil {
		return "", gone(err)
	}
	return string(buf[:n]), nil
}

func nsPath(pid, tid int) string {
	return "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/ns/net"
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
	fds, err := readDirInts(dir)
	if err != nil {
		return nil, gone(err)
	}
	var held []uint64
	buf := make([]byte, 64)
	for _, fd := range fds {
		n, err := unix.Readlink(dir+strconv.Itoa(fd), buf)
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
