package netns

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// SocketHolders scans the file descriptors of the processes pids (every
// process when pids is nil) and returns, for each socket inode of want, the
// first process holding it. It stops as soon as every inode is found, or at
// the deadline (zero: none). A
// socket with an inode that no process holds belongs to the kernel (NFS,
// CIFS, RDS, tunnels) — or to a process that was not scanned.
func SocketHolders(want map[uint32]bool, pids []int, deadline time.Time) map[uint32]Proc {
	held := map[uint32]Proc{}
	if pids == nil {
		pids, _ = allPids()
	}
	// Long-lived sockets (listeners, bound UDP) sit at low descriptor
	// numbers: look at the first few of every process before reading all
	// of a process with thousands of connections.
	const head = 64
	for _, phase := range []struct{ from, to int }{{0, head}, {head, -1}} {
		for _, pid := range pids {
			if len(held) == len(want) || !deadline.IsZero() && time.Now().After(deadline) {
				return held
			}
			scanFds(pid, phase.from, phase.to, want, held)
		}
	}
	return held
}

// scanFds looks at the descriptors from..to (to < 0: all) of pid.
func scanFds(pid, from, to int, want map[uint32]bool, held map[uint32]Proc) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	// Read no more of the directory than needed: listing /proc/PID/fd
	// costs a dentry per descriptor.
	n := -1
	if to >= 0 {
		n = to
	}
	fds, _ := d.Readdirnames(n)
	d.Close()
	if from >= len(fds) {
		return
	}
	fds = fds[from:]
	var comm string
	for _, fd := range fds {
		link, err := os.Readlink(dir + fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 32)
		ino := uint32(n)
		if err != nil || !want[ino] {
			continue
		}
		if _, dup := held[ino]; dup {
			continue
		}
		if comm == "" {
			comm = Comm(pid)
		}
		held[ino] = Proc{PID: pid, Comm: comm}
		if len(held) == len(want) {
			return
		}
	}
}

// allPids lists the processes in /proc.
func allPids() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
