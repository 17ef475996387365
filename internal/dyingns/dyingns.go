// Package dyingns counts the network namespaces that exist in the kernel
// but that no process, thread, open file or nsfs mount holds: namespaces
// kept alive by a socket (an orphaned connection), waiting in the kernel's
// cleanup (cleanup_net, "waiting for lo to become free"), or leaked some
// other way. That is the leak sockreap exists to prevent.
//
// The kernel has no counter of its network namespaces, and this kernel
// (6.18) no listns(2) either. So the count is a difference:
//
//   - alive: objects of the net_namespace slab cache
//     (/sys/kernel/slab/net_namespace, else /proc/slabinfo), the host's
//     namespace aside (init_net is static, not in the slab). SLUB counts
//     free objects in the per-CPU slabs as in use, so the figure is an
//     upper bound, and less the capacity of those slabs a lower one.
//     Writing 1 to .../shrink flushes the per-CPU slabs and makes the
//     count exact; it is harmless (the kernel does the same under memory
//     pressure) but it is a write to /sys on the operator's node, so it
//     is off unless Options.Shrink;
//   - reachable: the distinct namespaces of every thread
//     (/proc/*/task/*/ns/net), of every open file that is a namespace
//     (/proc/*/fd/*), and of every nsfs mount in every mount namespace
//     (/proc/*/mountinfo).
//
// Dying = alive - reachable, as bounds [Lower, Upper]. A namespace held
// only by a socket descriptor of a process elsewhere counts as dying, and
// namespaces created or freed while the count runs blur it by as many;
// docs/monitoring.md has a measurement. A cache merged with others (slab
// merging; sysfs shows aliases) makes the slab figure useless: Count
// says so instead of guessing.
package dyingns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Options tune a count.
type Options struct {
	// Shrink flushes the slab's per-CPU caches first (a write to
	// /sys/kernel/slab/net_namespace/shrink) so that the count is exact.
	Shrink bool
	// Root is prepended to /proc and /sys paths (tests); "" is /.
	Root string
}

// Census is one count.
type Census struct {
	// AliveLower and Alive bound the namespaces in the slab (the host's
	// aside); equal when exact.
	AliveLower int `json:"alive_lower"`
	Alive      int `json:"alive"`
	// Reachable are the namespaces a thread, open file or mount holds,
	// the host's aside.
	Reachable int `json:"reachable"`
	// Lower and Upper bound the dying namespaces.
	Lower int  `json:"lower"`
	Upper int  `json:"upper"`
	Exact bool `json:"exact"`
	// Source is where the slab figure came from.
	Source string `json:"source"`
}

// initNetInode is the inode newer kernels (6.x) give the initial network
// namespace: fixed, so it is known without reading /proc/1.
const initNetInode = 0xEFFFFFF9

// Count takes a census. It needs root (slab figures, other processes'
// /proc entries).
func Count(o Options) (Census, error) {
	var c Census
	before, err := readSlab(o)
	if err != nil {
		return c, err
	}
	reach, host := reachable(o.Root)
	after, err := readSlab(o)
	if err != nil {
		return c, err
	}
	c.Source = before.source
	// The host's namespace is counted by the scan but is not in the slab.
	if host != 0 {
		delete(reach, host)
	}
	delete(reach, initNetInode)
	c.Reachable = len(reach)
	c.AliveLower = min(before.lower, after.lower)
	c.Alive = max(before.upper, after.upper)
	c.Lower = max(0, c.AliveLower-c.Reachable)
	c.Upper = max(0, c.Alive-c.Reachable)
	c.Exact = before.exact && after.exact && before.upper == after.upper && c.Lower == c.Upper
	return c, nil
}

type slab struct {
	lower, upper int
	exact        bool
	source       string
}

func readSlab(o Options) (slab, error) {
	dir := filepath.Join(o.Root, "/sys/kernel/slab/net_namespace")
	if n, err := readInt(filepath.Join(dir, "aliases")); err == nil && n > 0 {
		return slab{}, fmt.Errorf("the net_namespace slab cache is merged with %d other caches on this kernel (slab_nomerge not set): its object count says nothing about namespaces", n)
	}
	if o.Shrink {
		if err := os.WriteFile(filepath.Join(dir, "shrink"), []byte("1"), 0); err != nil {
			return slab{}, fmt.Errorf("shrink the net_namespace slab: %w", err)
		}
	}
	objects, err1 := readInt(filepath.Join(dir, "objects"))
	cpuSlabs, err2 := readInt(filepath.Join(dir, "cpu_slabs"))
	perSlab, err3 := readInt(filepath.Join(dir, "objs_per_slab"))
	if err := errors.Join(err1, err2, err3); err == nil {
		// Free objects in per-CPU slabs count as in use: at most
		// cpu_slabs*objs_per_slab of them.
		return slab{lower: max(0, objects-cpuSlabs*perSlab), upper: objects, exact: cpuSlabs == 0, source: dir}, nil
	}
	// Without SLUB's sysfs (CONFIG_SLUB_DEBUG off): /proc/slabinfo's
	// active objects, an upper bound with no lower one.
	path := filepath.Join(o.Root, "/proc/slabinfo")
	f, err := os.Open(path)
	if err != nil {
		return slab{}, fmt.Errorf("read the net_namespace slab: %w (needs root)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 2 && fs[0] == "net_namespace" {
			n, err := strconv.Atoi(fs[1])
			if err != nil {
				break
			}
			return slab{upper: n, source: path}, nil
		}
	}
	return slab{}, fmt.Errorf("no net_namespace cache in %s (merged with another cache on this kernel): namespaces cannot be counted", path)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", path)
	}
	return strconv.Atoi(f[0])
}

// Reachable returns the inodes of the network namespaces that threads,
// open files and nsfs mounts hold, the host's included.
func Reachable() map[uint64]bool {
	r, _ := reachable("")
	return r
}

// reachable returns the inodes of the namespaces threads, open files and
// nsfs mounts hold, and the host's (pid 1's) namespace inode, 0 if
// unknown.
func reachable(root string) (map[uint64]bool, uint64) {
	proc := filepath.Join(root, "/proc")
	seen := map[uint64]bool{}
	var host uint64
	var st unix.Stat_t
	if unix.Stat(proc+"/1/ns/net", &st) == nil {
		host = st.Ino
	}
	pids, _ := os.ReadDir(proc)
	mountNS := map[uint64]bool{}
	buf := make([]byte, 64)
	for _, p := range pids {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		dir := proc + "/" + p.Name()
		if tasks, err := os.ReadDir(dir + "/task"); err == nil {
			for _, t := range tasks {
				if unix.Stat(dir+"/task/"+t.Name()+"/ns/net", &st) == nil {
					seen[st.Ino] = true
				}
			}
		}
		if fds, err := os.ReadDir(dir + "/fd"); err == nil {
			for _, fd := range fds {
				n, err := unix.Readlink(dir+"/fd/"+fd.Name(), buf)
				if err == nil && bytes.HasPrefix(buf[:n], []byte("net:[")) {
					if ino, ok := nsInode(string(buf[:n])); ok {
						seen[ino] = true
					}
				}
			}
		}
		if unix.Stat(dir+"/ns/mnt", &st) != nil || mountNS[st.Ino] {
			continue
		}
		mountNS[st.Ino] = true
		mountinfo(dir+"/mountinfo", seen)
	}
	return seen, host
}

// mountinfo adds the network namespaces mounted (nsfs, root net:[N]) in
// one mount namespace.
func mountinfo(path string, seen map[uint64]bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, " - nsfs ") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) > 3 {
			if ino, ok := nsInode(fs[3]); ok {
				seen[ino] = true
			}
		}
	}
}

func nsInode(s string) (uint64, bool) {
	if !strings.HasPrefix(s, "net:[") || !strings.HasSuffix(s, "]") {
		return 0, false
	}
	n, err := strconv.ParseUint(s[5:len(s)-1], 10, 64)
	return n, err == nil
}
