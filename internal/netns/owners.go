package netns

import (
	"os"
	"strconv"
	"strings"
)

// SocketHolders scans every process's file descriptors and returns, for
// each socket inode that want selects, the first process holding it. A
// socket with an inode that no process holds belongs to the kernel (NFS,
// CIFS, RDS, tunnels) — or to a process sockreap may not inspect.
func SocketHolders(want func(ino uint32) bool) map[uint32]Proc {
	held := map[uint32]Proc{}
	pids, err := os.ReadDir("/proc")
	if err != nil {
		return held
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		var comm string
		for _, fd := range fds {
			link, err := os.Readlink(dir + fd.Name())
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSuffix(link[len("socket:["):], "]"), 10, 32)
			if err != nil || !want(uint32(n)) {
				continue
			}
			if _, dup := held[uint32(n)]; dup {
				continue
			}
			if comm == "" {
				comm = Comm(pid)
			}
			held[uint32(n)] = Proc{PID: pid, Comm: comm}
		}
	}
	return held
}
