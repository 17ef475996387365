package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// namePrefix marks the bench's namespaces; the pid after it lets a later
// run remove what a killed run left behind.
const namePrefix = "srbench"

// benchNS is a named namespace filled with loopback connections held open
// by filler processes.
type benchNS struct {
	Name   string
	Path   string
	Before int // TCP sockets ss listed once filled

	mu      sync.Mutex // fillers grows while an interrupt may remove b
	fillers []*filler
}

var nsSeq atomic.Uint32

// live tracks every namespace not yet removed, for cleanup on interrupt.
var live struct {
	sync.Mutex
	m map[*benchNS]bool
}

// newFilledNS creates a fresh namespace with a wide ephemeral port range and
// fills it with pairs loopback connections (2*pairs sockets plus two
// listeners per filler), identical for a given pairs.
func newFilledNS(pairs int) (*benchNS, error) {
	name := fmt.Sprintf("%s%dn%d", namePrefix, os.Getpid(), nsSeq.Add(1))
	b := &benchNS{Name: name, Path: "/var/run/netns/" + name}
	if err := run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	live.Lock()
	if live.m == nil {
		live.m = map[*benchNS]bool{}
	}
	live.m[b] = true
	live.Unlock()
	for _, args := range [][]string{
		{"ip", "-n", name, "link", "set", "lo", "up"},
		// 45k connections to a handful of listeners need more ephemeral
		// ports than the default 28k; listener ports stay below 1024.
		{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"},
	} {
		if err := run(args...); err != nil {
			b.remove()
			return nil, err
		}
	}
	for i, left := 0, pairs; left > 0; i++ {
		n := min(left, maxPairsPerFiller)
		f, err := startFiller(b.Path, n, 900+i, 5*time.Minute)
		if err != nil {
			b.remove()
			return nil, err
		}
		b.mu.Lock()
		b.fillers = append(b.fillers, f)
		b.mu.Unlock()
		left -= n
	}
	st, err := b.sockets()
	if err != nil {
		b.remove()
		return nil, err
	}
	b.Before = st.total()
	if want := 2*pairs + 2*len(b.fillers); b.Before != want {
		b.remove()
		return nil, fmt.Errorf("namespace %s holds %d TCP sockets after filling, want %d", name, b.Before, want)
	}
	return b, nil
}

// stateCount counts sockets by ss state name.
type stateCount map[string]int

func (s stateCount) total() int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

func (s stateCount) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, s[k]))
	}
	return strings.Join(parts, ", ")
}

// sockets is the independent witness: what `ss -tanH` lists in the
// namespace, by state.
func (b *benchNS) sockets() (stateCount, error) {
	out, err := exec.Command("ip", "netns", "exec", b.Name, "ss", "-tanH").Output()
	if err != nil {
		return nil, fmt.Errorf("ss -tanH in %s: %w", b.Name, err)
	}
	st := stateCount{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			st[f[0]]++
		}
	}
	return st, nil
}

// remove kills the fillers and deletes the namespace. Safe to call twice
// and concurrently (the interrupt handler may race the main loop).
func (b *benchNS) remove() {
	live.Lock()
	had := live.m[b]
	delete(live.m, b)
	live.Unlock()
	if !had {
		return
	}
	b.mu.Lock()
	fillers := b.fillers
	b.mu.Unlock()
	for _, f := range fillers {
		f.kill()
	}
	if err := run("ip", "netns", "del", b.Name); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
}

// removeAll removes every namespace still alive (interrupt, failure).
func removeAll() {
	live.Lock()
	var all []*benchNS
	for b := range live.m {
		all = append(all, b)
	}
	live.Unlock()
	for _, b := range all {
		b.remove()
	}
}

// removeStale deletes bench namespaces left by runs whose process is gone
// (a SIGKILLed bench cannot clean up after itself).
func removeStale() {
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "n")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // its bench is still running
		}
		fmt.Fprintf(os.Stderr, "removing stale namespace %s of a previous run\n", e.Name())
		_ = run("ip", "netns", "del", e.Name())
	}
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
