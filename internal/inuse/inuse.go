// Package inuse decides whether a network namespace may be drained, at a
// cost that follows what the namespace holds rather than what the host
// runs. The rule (docs/safety-check.md):
//
//   - The hinted processes (a handful: the container's pid, the process
//     whose namespace it joined, its cgroup's) are always read; one of them
//     inside means the namespace is in use.
//   - Beyond them, a namespace with no socket needs no check: a drain has
//     nothing to destroy.
//   - Sockets no descriptor holds (the dump gives them inode 0: orphans,
//     TIME-WAIT and request sockets) are destroyed without a scan of the
//     host: no process can be using them.
//   - Only when sockets with an inode remain are their holders looked for:
//     the hinted processes and the container's cgroup first, then every
//     process and every thread of the host, in parallel, stopping at the
//     first live thread inside the namespace (the namespace is in use: the
//     drain is refused or skipped). Sockets held by processes outside the
//     namespace (they entered it, made a socket, left) are kept and
//     reported. A scan that could not read every process (access denied,
//     budget) keeps every socket with an inode: an unread process may be
//     inside.
//
// The scan is hand-written on /proc: no library reads threads' namespaces
// and descriptor tables with early exit.
package inuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/textsafe"
)

// Hint tells Check where the namespace's processes were last seen.
type Hint struct {
	PIDs    []int    // processes that were in the namespace (the container's init, a pause process)
	Cgroups []string // cgroups the container's processes ran in (config.json cgroupsPath)
	// Everyone makes Check look at every process even when the namespace
	// holds no socket with a holder: the operator's drain refuses a
	// namespace in which anything runs.
	Everyone bool
	// NoHolders: the caller destroys sockets whoever holds them (drain
	// --force), so Check looks for live threads only, never reads a
	// descriptor table (PathThreads).
	NoHolders bool
}

// Paths a Verdict can take, cheapest first.
const (
	PathEmpty      = "empty"      // no socket at all: nothing checked
	PathHolderless = "holderless" // only sockets no descriptor holds: no process scan
	PathScan       = "scan"       // processes and threads scanned
	PathThreads    = "threads"    // threads scanned, holders not looked for (Hint.NoHolders)
)

// Checked says what a check looked at.
type Checked struct {
	Path       string `json:"path"`
	Sockets    int    `json:"sockets"`              // the namespace's socket counters (sockstat)
	WithInode  int    `json:"with_inode,omitempty"` // dumped sockets with a holder (inode)
	Hinted     int    `json:"hinted,omitempty"`     // processes from the hint, looked at first
	Processes  int    `json:"processes,omitempty"`  // processes scanned
	Threads    int    `json:"threads,omitempty"`    // threads whose namespace was read
	Stopped    string `json:"stopped,omitempty"`    // why the scan ended early
	DurationUS int64  `json:"duration_us"`
}

// Holder is a socket held by a process outside the namespace.
type Holder struct {
	Inode uint64 `json:"inode"`
	netns.Proc
}

// Verdict is the outcome of Check.
type Verdict struct {
	// InUse: a live thread runs in the namespace. Users are the
	// processes found with one (the scan stops at the first).
	InUse bool         `json:"in_use"`
	Users []netns.Proc `json:"users,omitempty"`
	// Held are sockets of the namespace held by processes outside it.
	Held []Holder `json:"held,omitempty"`
	// Incomplete: some processes could not be read (Unreadable counts
	// them) or the budget ran out, so sockets with an inode are kept.
	Incomplete bool    `json:"incomplete,omitempty"`
	Unreadable int     `json:"unreadable,omitempty"`
	Checked    Checked `json:"checked"`

	held      map[uint64]bool
	noSockets bool // the namespace's counters said no socket at all
}

// Empty reports whether the namespace held no socket when checked: a
// drain would have nothing to do.
func (v *Verdict) Empty() bool { return v.noSockets }

// Keep tells whether the drain must leave the socket with this inode
// alone: a process outside holds it, or the scan was incomplete.
func (v *Verdict) Keep(inode uint64) bool {
	if inode == 0 {
		return false
	}
	return v.Incomplete || v.held[inode]
}

// KeepFunc is Keep for reap.Options.Keep: nil where no holder scan ran
// (nothing to keep), Keep after one, so that the drain also knows the
// holders were looked for and does not read /proc again for its report.
func (v *Verdict) KeepFunc() func(uint64) bool {
	if v.Checked.Path != PathScan {
		return nil
	}
	return v.Keep
}

// Procs returns the live processes found inside.
func (v *Verdict) Procs() []netns.Proc { return v.Users }

// Reason says in a line why the namespace must not be drained, "" when
// it may be.
func (v *Verdict) Reason() string {
	if !v.InUse {
		return ""
	}
	return "live process in the namespace: " + DescribeUsers(v.Users)
}

// String summarises what was checked, for logs and messages.
func (v *Verdict) String() string {
	c := v.Checked
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d sockets", c.Path, c.Sockets)
	switch c.Path {
	case PathScan:
		fmt.Fprintf(&b, ", %d with a holder; %d processes (%d hinted), %d threads read", c.WithInode, c.Processes, c.Hinted, c.Threads)
	case PathThreads:
		fmt.Fprintf(&b, ", holders not looked for; %d processes (%d hinted), %d threads read", c.Processes, c.Hinted, c.Threads)
	}
	if c.Stopped != "" {
		fmt.Fprintf(&b, "; stopped: %s", c.Stopped)
	}
	fmt.Fprintf(&b, " (%.2f ms)", float64(c.DurationUS)/1000)
	if v.InUse {
		b.WriteString("; in use by " + DescribeUsers(v.Users))
	}
	if len(v.Held) > 0 {
		fmt.Fprintf(&b, "; %d sockets held outside, kept", len(v.Held))
	}
	switch {
	case v.Incomplete && c.Path == PathThreads:
		fmt.Fprintf(&b, "; incomplete (%d processes unreadable)", v.Unreadable)
	case v.Incomplete:
		fmt.Fprintf(&b, "; incomplete (%d processes unreadable): sockets with a holder kept", v.Unreadable)
	}
	return b.String()
}

// DescribeUsers renders up to five processes for a message, their command
// names quoted (textsafe.Quote) when they could fool a terminal (a
// container chooses its own comm).
func DescribeUsers(ps []netns.Proc) string {
	var parts []string
	for i, p := range ps {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ps)-5))
			break
		}
		parts = append(parts, strconv.Itoa(p.PID)+" "+textsafe.Quote(p.Comm))
	}
	return strings.Join(parts, ", ")
}

// PathPIDs returns the process named by a /proc/PID/ns/net or
// /proc/PID/task/TID/ns/net path (a container that joined another's
// namespace through its pid), none for other paths. It is only a hint:
// the pid may be reused, and the check reads the namespace anyway.
func PathPIDs(path string) []int {
	rest, ok := strings.CutPrefix(filepath.Clean(path), "/proc/")
	if !ok {
		return nil
	}
	first, _, _ := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(first)
	if err != nil || pid <= 0 {
		return nil
	}
	return []int{pid}
}

// Check decides whether ns is in use and which of its sockets processes
// outside it hold; see the package doc for the rule. ctx bounds the scan:
// at its deadline the verdict is Incomplete.
func Check(ctx context.Context, ns *netns.NS, hint Hint) (*Verdict, error) {
	start := time.Now()
	v := &Verdict{}
	defer func() { v.Checked.DurationUS = time.Since(start).Microseconds() }()

	n, err := reap.SocketsInUse(ns)
	if err != nil {
		n = -1 // unknown: dump
	}
	v.Checked.Sockets = max(n, 0)
	v.noSockets = n == 0
	want := map[uint64]bool{}
	if n != 0 && !hint.NoHolders {
		socks, err := reap.List(ns)
		if err != nil {
			return nil, fmt.Errorf("list sockets of network namespace %s: %w", ns.ID, err)
		}
		if n < 0 {
			v.Checked.Sockets = len(socks)
		}
		for _, s := range socks {
			if s.Inode != 0 {
				want[uint64(s.Inode)] = true
			}
		}
	}
	v.Checked.WithInode = len(want)
	if !hint.Everyone && len(want) == 0 {
		switch {
		case n == 0:
			v.Checked.Path = PathEmpty
		case hint.NoHolders:
			v.Checked.Path = PathThreads
		default:
			v.Checked.Path = PathHolderless
		}
		// The hinted processes are read whatever the namespace holds:
		// a handful, and one of them inside means the namespace is
		// someone's (a sharing container, a pin's still running owner).
		if len(hint.PIDs)+len(hint.Cgroups) > 0 {
			s := newScanner(ns.ID, want, v)
			s.run(ctx, s.hinted(hint))
			s.finish(ctx, false)
		}
		return v, nil
	}
	v.Checked.Path = PathScan
	if hint.NoHolders {
		v.Checked.Path = PathThreads
	}
	scan(ctx, ns.ID, hint, want, v)
	return v, nil
}

// scanner is the shared state of one parallel scan.
type scanner struct {
	id   netns.ID
	want map[uint64]bool
	seen map[int]bool // processes looked at (or never to look at: this one)
	stop atomic.Bool  // a live thread inside was found, or the budget ran out

	mu         sync.Mutex // guards the fields below and the verdict
	v          *Verdict
	threads    int
	processes  int
	unreadable int
}

func newScanner(id netns.ID, want map[uint64]bool, v *Verdict) *scanner {
	return &scanner{id: id, want: want, v: v, seen: map[int]bool{os.Getpid(): true}}
}

// hinted lists the hinted processes, once each, never this one.
func (s *scanner) hinted(hint Hint) []int {
	var hinted []int
	for _, pid := range append(append([]int(nil), hint.PIDs...), CgroupPIDs(hint.Cgroups)...) {
		if pid > 0 && !s.seen[pid] {
			s.seen[pid] = true
			hinted = append(hinted, pid)
		}
	}
	s.v.Checked.Hinted = len(hinted)
	return hinted
}

// scan looks at the hinted processes, then at every process, in parallel,
// for threads inside the namespace and holders of the wanted sockets.
func scan(ctx context.Context, id netns.ID, hint Hint, want map[uint64]bool, v *Verdict) {
	s := newScanner(id, want, v)
	seen := s.seen
	// The hinted processes are the likeliest to be inside: look at them
	// alone first, so that a busy host is not read when they are.
	s.run(ctx, s.hinted(hint))
	if !s.stop.Load() {
		all, err := netns.PIDs()
		if err != nil {
			s.unreadable++ // no process list at all: nothing is proven
			v.Checked.Stopped = err.Error()
		}
		// Newest first: a container's processes are younger than the
		// host's daemons, so a live one is met early.
		rest := make([]int, 0, len(all))
		for i := len(all) - 1; i >= 0; i-- {
			if !seen[all[i]] {
				rest = append(rest, all[i])
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(rest)))
		s.run(ctx, rest)
	}
	s.finish(ctx, true)
}

// finish fills the verdict from the scan. complete: every process was
// meant to be read, so an unread one makes the verdict incomplete.
func (s *scanner) finish(ctx context.Context, complete bool) {
	v := s.v
	if complete && ctx.Err() != nil && !v.InUse {
		v.Checked.Stopped = "budget: " + ctx.Err().Error()
		v.Incomplete = true
	}
	v.Checked.Threads = s.threads
	v.Checked.Processes = s.processes
	v.Unreadable = s.unreadable
	if complete && s.unreadable > 0 {
		v.Incomplete = true
	}
	if v.InUse {
		// A refusal needs no more proof; nothing is drained, so the
		// holders found so far mean nothing either.
		v.Checked.Stopped = "live thread inside"
		v.Incomplete = false
		v.Held, v.held = nil, nil
	}
	sort.Slice(v.Users, func(i, j int) bool { return v.Users[i].PID < v.Users[j].PID })
	sort.Slice(v.Held, func(i, j int) bool { return v.Held[i].Inode < v.Held[j].Inode })
}

// workers is the scan's parallelism: reading /proc is system calls, most
// of the time spent in the kernel, so a few more goroutines than CPUs keep
// every CPU busy.
func workers(n int) int { return max(1, min(n, 2*runtime.NumCPU(), 16)) }

// run scans pids on parallel workers until done or stopped.
func (s *scanner) run(ctx context.Context, pids []int) {
	if len(pids) == 0 {
		return
	}
	if len(pids) > 64 {
		// A scan of the host gets a P per CPU; a hook starts with one.
		reap.RaiseGOMAXPROCS(runtime.NumCPU())
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range workers(len(pids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var threads, processes, unreadable int
			for !s.stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(pids) {
					break
				}
				if i%64 == 0 && ctx.Err() != nil {
					s.stop.Store(true)
					break
				}
				t, err := s.one(pids[i])
				threads += t
				processes++
				if err != nil && !errors.Is(err, netns.ErrGone) {
					unreadable++
				}
			}
			s.mu.Lock()
			s.threads += threads
			s.processes += processes
			s.unreadable += unreadable
			s.mu.Unlock()
		}()
	}
	wg.Wait()
}

// one looks at process pid: are any of its threads inside, and which of
// the wanted sockets does it hold. It returns the threads read.
func (s *scanner) one(pid int) (threads int, err error) {
	tids, err := netns.Threads(pid)
	if err != nil {
		return 0, err
	}
	var readErr error
	for _, tid := range tids {
		in, err := netns.In(s.id, pid, tid)
		threads++
		if in {
			s.stop.Store(true)
			s.mu.Lock()
			s.v.InUse = true
			s.v.Users = append(s.v.Users, netns.Proc{PID: pid, Comm: netns.Comm(pid)})
			s.mu.Unlock()
			return threads, nil
		}
		if err != nil && !errors.Is(err, netns.ErrGone) && readErr == nil {
			readErr = fmt.Errorf("namespace of thread %d of process %d: %w", tid, pid, err)
		}
	}
	if len(s.want) == 0 {
		return threads, readErr
	}
	// The descriptor table: read through a live thread (a leader that
	// exited leaves its threads running), and through every thread that
	// has a table of its own.
	tables := 0
	for _, tid := range tids {
		if tables > 0 {
			own, err := netns.OwnFiles(pid, tid)
			if err != nil || !own {
				continue
			}
		}
		held, err := netns.HeldSockets(pid, tid, func(ino uint64) bool { return s.want[ino] })
		if errors.Is(err, netns.ErrGone) {
			continue
		}
		if err != nil {
			if readErr == nil {
				readErr = fmt.Errorf("descriptors of process %d: %w", pid, err)
			}
			continue
		}
		tables++
		if len(held) > 0 {
			s.hold(pid, held)
		}
	}
	return threads, readErr
}

// hold records sockets held by pid, whose threads are all outside.
func (s *scanner) hold(pid int, inodes []uint64) {
	comm := netns.Comm(pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v.held == nil {
		s.v.held = map[uint64]bool{}
	}
	for _, ino := range inodes {
		if s.v.held[ino] {
			continue
		}
		s.v.held[ino] = true
		s.v.Held = append(s.v.Held, Holder{Inode: ino, Proc: netns.Proc{PID: pid, Comm: comm}})
	}
}

// CgroupHints returns the cgroups worth looking at first for a container
// whose config.json says cgroupsPath: its own (gone by poststop when the
// runtime removed it) and, when it sits in a Kubernetes pod's cgroup, the
// pod's, which holds the other containers sharing its namespace.
func CgroupHints(cgroupsPath string) []string {
	if cgroupsPath == "" {
		return nil
	}
	own := systemdPath(cgroupsPath)
	hints := []string{own}
	parent := filepath.Dir(own)
	if base := filepath.Base(parent); strings.HasPrefix(base, "pod") || strings.Contains(base, "-pod") {
		hints = append(hints, parent)
	}
	return hints
}

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// CgroupPIDs lists the processes in the cgroups (and their descendants),
// as config.json's cgroupsPath names them: a path under the hierarchy
// ("/kubepods/pod1/abc") or systemd's "slice:prefix:name". Cgroups that do
// not exist (the container is gone) give nothing.
func CgroupPIDs(cgroups []string) []int {
	var pids []int
	for _, cg := range cgroups {
		if cg == "" {
			continue
		}
		rel := systemdPath(cg)
		// cgroup v2, then the usual v1 controllers.
		for _, h := range []string{"", "unified", "pids", "memory", "cpu", "systemd"} {
			dir := filepath.Join(cgroupRoot, h, rel)
			if !strings.HasPrefix(dir, cgroupRoot+"/") {
				continue
			}
			if found := readProcs(dir, 0); found != nil {
				pids = append(pids, found...)
				break
			}
		}
	}
	return pids
}

// systemdPath turns runc's systemd notation "slice:prefix:name" into the
// cgroup path systemd gives it, "slice/prefix-name.scope".
func systemdPath(cg string) string {
	if strings.HasPrefix(cg, "/") {
		return filepath.Clean(cg)
	}
	parts := strings.Split(cg, ":")
	if len(parts) != 3 {
		return filepath.Clean("/" + cg)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	// A nested slice "a-b-c.slice" lives under a.slice/a-b.slice/.
	var dirs []string
	if slice != "-.slice" {
		base := strings.TrimSuffix(slice, ".slice")
		elems := strings.Split(base, "-")
		for i := range elems {
			dirs = append(dirs, strings.Join(elems[:i+1], "-")+".slice")
		}
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope"
		if prefix == "" {
			unit = name + ".scope"
		}
	}
	return "/" + filepath.Join(append(dirs, unit)...)
}

// maxCgroupDepth bounds the descent into a container's sub-cgroups.
const maxCgroupDepth = 4

// readProcs reads cgroup.procs of dir and of its sub-cgroups; nil when dir
// is no cgroup.
func readProcs(dir string, depth int) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	pids := []int{}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	if depth >= maxCgroupDepth {
		return pids
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			pids = append(pids, readProcs(filepath.Join(dir, e.Name()), depth+1)...)
		}
	}
	return pids
}
