// Package netns opens network namespaces by path or pid, identifies them by
// the (device, inode) of their nsfs file, runs code inside them on a locked
// OS thread, and tells which processes live in one. It builds on
// vishvananda/netns for the handles and the setns calls.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ID identifies a namespace: the device and inode of its nsfs file.
type ID struct {
	Dev uint64
	Ino uint64
}

// String returns the form of /proc/<pid>/ns/net links, net:[inode].
func (id ID) String() string { return "net:[" + strconv.FormatUint(id.Ino, 10) + "]" }

// Zero reports whether the ID is unset.
func (id ID) Zero() bool { return id == ID{} }

// NS is an open network namespace. The open file keeps the namespace alive
// until Close.
type NS struct {
	h    vnetns.NsHandle
	Path string // what it was opened from
	ID   ID
}

// Open opens the network namespace at path: a /proc/<pid>/ns/net link, a
// bind mount of one (/var/run/netns/NAME, a pin), or /proc/<pid>/task/<tid>/ns/net.
func Open(path string) (*NS, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	ns := &NS{h: h, Path: path}
	id, err := idOfFd(int(h))
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	ns.ID = id
	return ns, nil
}

// OpenPID opens the network namespace of process pid.
func OpenPID(pid int) (*NS, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("open network namespace of pid %d: not a valid pid", pid)
	}
	return Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
}

// ErrNotNetns is returned for a file that is not a network namespace.
var ErrNotNetns = errors.New("not a network namespace (nsfs) file")

func idOfFd(fd int) (ID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return ID{}, fmt.Errorf("stat: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return ID{}, fmt.Errorf("statfs: %w", err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return ID{}, ErrNotNetns
	}
	// NS_GET_NSTYPE tells a netns from other namespaces (4.11+); where
	// the ioctl is missing, trust the caller's path.
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err == nil && t != unix.CLONE_NEWNET {
		return ID{}, ErrNotNetns
	}
	return ID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// IDOfFd returns the identity of the network namespace open as fd.
func IDOfFd(fd int) (ID, error) { return idOfFd(fd) }

// IDOf returns the identity of the namespace at path without keeping it open.
func IDOf(path string) (ID, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ID{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	id, err := idOfFd(fd)
	if err != nil {
		return ID{}, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// IsNsfs reports whether path is an nsfs file of a network namespace (a live
// /proc link or a bind mount of one), as opposed to a plain file left where
// a mount used to be.
func IsNsfs(path string) bool {
	_, err := IDOf(path)
	return err == nil
}

// Close releases the namespace handle.
func (n *NS) Close() error {
	if n == nil || !n.h.IsOpen() {
		return nil
	}
	return n.h.Close()
}

// Fd returns the namespace file descriptor.
func (n *NS) Fd() int { return int(n.h) }

// Do runs fn with the calling goroutine locked to an OS thread that is inside
// the namespace. Sockets fn creates belong to the namespace and keep working
// from any thread afterwards. If the thread cannot be switched back, it is
// left locked so the runtime destroys it rather than reuse it in the wrong
// namespace.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()
	if err := vnetns.Set(n.h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s (%s): %w", n.Path, n.ID, err)
	}
	ferr := fn()
	if err := vnetns.Set(orig); err != nil {
		// Stay locked: the goroutine exits this thread's use and the
		// runtime terminates it with the goroutine.
		return errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", n.Path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Self returns the identity of the calling thread's network namespace.
func Self() (ID, error) {
	return IDOf("/proc/thread-self/ns/net")
}

// initNetInode is the fixed inode nsfs gives the initial network namespace
// since Linux 6.18 (0xEFFFFFF9). Dynamically allocated namespace inodes start
// at 0xF0000000, so on older kernels no other namespace can have it.
const initNetInode = 0xEFFFFFF9

// Host returns the identity of the host's (initial) network namespace, read
// from /proc/1/ns/net. known is false when that cannot be read (for example
// EACCES in a sandbox); IsHost still recognises the fixed inode of newer
// kernels then.
func Host() (id ID, known bool, err error) {
	id, err = IDOf("/proc/1/ns/net")
	if err != nil {
		return ID{}, false, err
	}
	return id, true, nil
}

// IsHost reports whether id is the host's network namespace. verified is
// false when the host namespace could not be identified by either means, so
// the answer "false" is a guess.
func IsHost(id ID) (host, verified bool) {
	if id.Ino == initNetInode {
		return true, true
	}
	h, known, _ := Host()
	if !known {
		// Where the kernel gives the initial namespace its fixed inode,
		// any other inode is not the host's.
		return false, fixedInitInode()
	}
	return h == id, true
}

// fixedInitInode reports whether the running kernel (6.18 or later) gives
// the initial network namespace the fixed inode initNetInode.
func fixedInitInode() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 6 || major == 6 && minor >= 18
}

// ErrHost and ErrSelf are returned by CheckTarget.
var (
	ErrHost = errors.New("is the host's network namespace")
	ErrSelf = errors.New("is sockreap's own network namespace")
)

// CheckTarget refuses the host's namespace and the caller's own. The host's
// is looked at first: sockreap usually runs in it, and "the host's" is
// what the operator must hear. The warning is non-empty when the host
// namespace could not be identified.
func CheckTarget(id ID) (warning string, err error) {
	return CheckTargetWith(id, IsHost, Self)
}

// CheckTargetWith is CheckTarget with the host and own namespaces told by
// isHost and self, for callers that identify them another way.
func CheckTargetWith(id ID, isHost func(ID) (host, verified bool), self func() (ID, error)) (warning string, err error) {
	host, verified := isHost(id)
	if host {
		return "", fmt.Errorf("network namespace %s %w", id, ErrHost)
	}
	own, err := self()
	if err != nil {
		return "", fmt.Errorf("identify own network namespace: %w", err)
	}
	if id == own {
		return "", fmt.Errorf("network namespace %s %w", id, ErrSelf)
	}
	if !verified {
		warning = "could not identify the host network namespace (/proc/1/ns/net unreadable); only the own-namespace check applied"
	}
	return warning, nil
}

// Proc is a process inside a namespace.
type Proc struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// Procs lists the processes with a thread in the namespace id (the leader
// or any other: setns moves one thread). Processes that cannot be read
// (access denied) are counted in unreadable; those that exit meanwhile are
// skipped. It reads every process on the host; package inuse answers the
// drain's question at a cost that follows the namespace instead.
func Procs(id ID) (procs []Proc, unreadable int, err error) {
	m, unreadable, err := ProcsIn(id)
	return m[id], unreadable, err
}

// ProcsIn is Procs for several namespaces at once, in one pass over the
// host's processes and threads.
func ProcsIn(ids ...ID) (procs map[ID][]Proc, unreadable int, err error) {
	pids, err := PIDs()
	if err != nil {
		return nil, 0, err
	}
	byName := make(map[string]ID, len(ids))
	for _, id := range ids {
		byName[id.String()] = id
	}
	procs = map[ID][]Proc{}
	self := os.Getpid()
	for _, pid := range pids {
		if pid == self {
			continue
		}
		tids, err := Threads(pid)
		if err != nil {
			if !errors.Is(err, ErrGone) {
				unreadable++
			}
			continue
		}
		found := map[ID]bool{}
		failed := false
		for _, tid := range tids {
			name, err := nsName(pid, tid)
			if err != nil {
				failed = failed || !errors.Is(err, ErrGone)
				continue
			}
			if id, ok := byName[name]; ok && !found[id] {
				found[id] = true
				procs[id] = append(procs[id], Proc{PID: pid, Comm: Comm(pid)})
			}
		}
		if failed && len(found) == 0 {
			unreadable++
		}
	}
	return procs, unreadable, nil
}

// ProcIn reports whether any thread of process pid is in the namespace id.
func ProcIn(id ID, pid int) (bool, error) {
	tids, err := Threads(pid)
	if err != nil {
		return false, err
	}
	var firstErr error
	for _, tid := range tids {
		in, err := In(id, pid, tid)
		if in {
			return true, nil
		}
		if err != nil && !errors.Is(err, ErrGone) && firstErr == nil {
			firstErr = err
		}
	}
	return false, firstErr
}

// Comm returns the command name of pid, or "" when it cannot be read.
func Comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b)
}
