// Command busynode measures the cost of the drain's safety check and of the
// drain itself on a node-like host: idle, then with 100, 1,000 and 3,000
// background processes holding ten times as many threads (all started by
// the bench and removed afterwards, package load). It prints how each cost
// grows with the process count, as a ratio to the idle figure of the same
// run, and times gc of 100 stale pins on the most loaded host.
//
// Run as root from the repository root: make bench, or
//
//	go run ./test/bench/busynode -hook bin/sockreap-hook
//
// See docs/bench.md for how to read the output.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/test/bench/load"
	"golang.org/x/sys/unix"
)

func main() {
	load.Main()
	levels := flag.String("procs", "100,1000,3000", "background process counts to measure besides idle")
	perProc := flag.Int("threads-per-proc", 10, "threads per background process, on average")
	reps := flag.Int("reps", 21, "measurements per cost and load (the table shows medians)")
	pins := flag.Int("pins", 100, "stale pins for gc on the most loaded host (0: skip)")
	hook := flag.String("hook", "bin/sockreap-hook", "sockreap-hook binary for the gc run")
	flag.Parse()
	var ls []int
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fail(fmt.Errorf("-procs: bad count %q", f))
		}
		ls = append(ls, n)
	}
	if os.Geteuid() != 0 {
		fail(errors.New("needs root (network namespaces, pins): run 'sudo make bench'"))
	}
	if err := run(ls, *perProc, *reps, *pins, *hook); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "busynode: %v\n", err)
	os.Exit(1)
}

// costs are the medians measured at one load.
type costs struct {
	load                         string
	procs, threads               int // on the host, from /proc
	fullScan, empty, orphans, ck time.Duration
	held                         time.Duration
}

func run(levels []int, perProc, reps, pins int, hook string) error {
	tmp, err := os.MkdirTemp("", "sockreap-busynode-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	caps, err := reap.ProbeCached(filepath.Join(tmp, "probe"))
	if err != nil {
		return fmt.Errorf("kernel probe: %w", err)
	}
	f, err := newFixture()
	if err != nil {
		return err
	}
	defer f.close()

	var rows []costs
	measure := func(name string) error {
		c, err := f.measure(reps, caps)
		if err != nil {
			return err
		}
		c.load = name
		rows = append(rows, c)
		fmt.Fprintf(os.Stderr, "busynode: %s measured\n", name)
		return nil
	}
	if err := measure("idle"); err != nil {
		return err
	}
	var l *load.Load
	defer func() { l.Stop() }()
	for _, n := range levels {
		l.Stop()
		if l, err = load.Start(n, n*perProc); err != nil {
			return err
		}
		if err := measure("+" + l.String()); err != nil {
			return err
		}
	}
	printTable(rows)

	if pins > 0 {
		idle, loaded := time.Duration(0), time.Duration(0)
		if loaded, err = gcStale(hook, tmp, "loaded", pins); err != nil {
			return err
		}
		l.Stop()
		if idle, err = gcStale(hook, tmp, "idle", pins); err != nil {
			return err
		}
		fmt.Printf("\ngc of %d stale pins: idle %s, with %s %s (target ≤ 1 s)\n", pins, ms(idle), rows[len(rows)-1].load[1:], ms(loaded))
	}
	return nil
}

func printTable(rows []costs) {
	idle := rows[0]
	fmt.Println("Safety check and drain against host size (medians; ratio to idle in brackets)")
	fmt.Println()
	fmt.Println("| load | processes / threads on the host | full scan of every process and thread | empty namespace: check + drain | orphans only: check + drain | one held socket: check (scan path) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %d / %d | %s (%.1f×) | %s (%.2f×) | %s (%.2f×) | %s (%.1f×) |\n", r.load, r.procs, r.threads,
			ms(r.fullScan), ratio(r.fullScan, idle.fullScan), ms(r.empty), ratio(r.empty, idle.empty),
			ms(r.orphans), ratio(r.orphans, idle.orphans), ms(r.held), ratio(r.held, idle.held))
	}
	last := rows[len(rows)-1]
	fmt.Printf("\ntargets at %s: empty %.2f× idle, orphans only %.2f× idle (target ≤ 1.2×)\n",
		last.load[1:], ratio(last.empty, idle.empty), ratio(last.orphans, idle.orphans))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// fixture holds the namespaces measured: an empty one, one for orphans
// (X, linked by a veth to a peer P that never reads) and one with a socket
// this process holds from outside.
type fixture struct {
	names             []string
	empty, x, p, held *netns.NS
	peerAddr          netip.AddrPort
	lst, heldFD       int
}

func newFixture() (*fixture, error) {
	f := &fixture{lst: -1, heldFD: -1}
	tag := strconv.Itoa(os.Getpid())
	e, x, p, h := "srbusy"+tag+"e", "srbusy"+tag+"x", "srbusy"+tag+"p", "srbusy"+tag+"h"
	va, vb := "srbx"+tag, "srbp"+tag
	steps := [][]string{
		{"netns", "add", e}, {"netns", "add", x}, {"netns", "add", p}, {"netns", "add", h},
		{"-n", x, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", p},
		{"-n", x, "addr", "add", "192.0.2.1/24", "dev", va}, {"-n", p, "addr", "add", "192.0.2.2/24", "dev", vb},
		{"-n", x, "link", "set", va, "up"}, {"-n", p, "link", "set", vb, "up"},
		{"-n", h, "link", "set", "lo", "up"},
	}
	for i, s := range steps {
		if i < 4 {
			f.names = append(f.names, s[2])
		}
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			f.close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	var err error
	open := func(name string) *netns.NS {
		if err != nil {
			return nil
		}
		var ns *netns.NS
		ns, err = netns.Open("/var/run/netns/" + name)
		return ns
	}
	f.empty, f.x, f.p, f.held = open(e), open(x), open(p), open(h)
	if err != nil {
		f.close()
		return nil, err
	}
	f.peerAddr = netip.MustParseAddrPort("192.0.2.2:7100")
	if f.lst, err = socketIn(f.p, unix.SOCK_STREAM); err == nil {
		_ = unix.SetsockoptInt(f.lst, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		if err = unix.Bind(f.lst, &unix.SockaddrInet4{Port: 7100, Addr: f.peerAddr.Addr().As4()}); err == nil {
			err = unix.Listen(f.lst, 64)
		}
	}
	// A socket made in h and held by this process, outside h.
	if err == nil {
		if f.heldFD, err = socketIn(f.held, unix.SOCK_STREAM); err == nil {
			if err = unix.Bind(f.heldFD, &unix.SockaddrInet4{Port: 7200, Addr: [4]byte{127, 0, 0, 1}}); err == nil {
				err = unix.Listen(f.heldFD, 8)
			}
		}
	}
	if err != nil {
		f.close()
		return nil, fmt.Errorf("bench sockets: %w", err)
	}
	return f, nil
}

func socketIn(ns *netns.NS, typ int) (fd int, err error) {
	err = ns.Do(func() error {
		fd, err = unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func (f *fixture) close() {
	for _, fd := range []int{f.lst, f.heldFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, ns := range []*netns.NS{f.empty, f.x, f.p, f.held} {
		ns.Close()
	}
	for _, n := range f.names {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
}

// orphan leaves one zero-window orphan in X: a connection to the peer,
// filled, then closed. It returns the peer's end, to close after the drain.
func (f *fixture) orphan() (peerEnd int, err error) {
	c, err := socketIn(f.x, unix.SOCK_STREAM)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
	if err := unix.Connect(c, &unix.SockaddrInet4{Port: 7100, Addr: f.peerAddr.Addr().As4()}); err != nil {
		unix.Close(c)
		return -1, fmt.Errorf("connect: %w", err)
	}
	a, _, err := unix.Accept(f.lst)
	if err != nil {
		unix.Close(c)
		return -1, fmt.Errorf("accept: %w", err)
	}
	_ = unix.SetNonblock(c, true)
	buf := make([]byte, 64<<10)
	for {
		if _, err := unix.Write(c, buf); err != nil {
			break // the window is closed
		}
	}
	unix.Close(c)
	return a, nil
}

// measure takes the medians of every cost at the current load.
// cheapSamples are the samples of the empty and orphans-only drains per
// round.
const cheapSamples = 5

func (f *fixture) measure(reps int, caps *reap.Capabilities) (costs, error) {
	var c costs
	c.procs, c.threads = hostTasks()
	ctx := context.Background()
	opts := reap.Options{Caps: caps, Orphans: reap.OrphansDestroy}
	var full, empty, orphans, held []time.Duration
	checkAndDrain := func(ns *netns.NS) (time.Duration, *reap.Report, error) {
		start := time.Now()
		v, err := inuse.Check(ctx, ns, inuse.Hint{})
		if err != nil {
			return 0, nil, err
		}
		if v.InUse {
			return 0, nil, fmt.Errorf("%s in use: %s", ns.Path, v)
		}
		o := opts
		o.Keep = v.KeepFunc()
		rep, err := reap.Drain(ctx, ns, o)
		return time.Since(start), rep, err
	}
	for range reps {
		start := time.Now()
		if _, _, err := netns.Procs(f.empty.ID); err != nil {
			return c, err
		}
		full = append(full, time.Since(start))

		// The cheap paths (a fraction of a millisecond to a few) take
		// five samples a round: their medians otherwise move by more
		// than the 20% the target allows from one run to the next.
		for range cheapSamples {
			d, _, err := checkAndDrain(f.empty)
			if err != nil {
				return c, err
			}
			empty = append(empty, d)

			peer, err := f.orphan()
			if err != nil {
				return c, err
			}
			d, rep, err := checkAndDrain(f.x)
			unix.Close(peer)
			if err != nil {
				return c, err
			}
			if rep.Destroyed != 1 {
				return c, fmt.Errorf("orphans-only drain destroyed %d, want 1: %+v", rep.Destroyed, rep)
			}
			orphans = append(orphans, d)
		}

		start = time.Now()
		v, err := inuse.Check(ctx, f.held, inuse.Hint{})
		if err != nil {
			return c, err
		}
		if v.InUse || v.Checked.Path != inuse.PathScan {
			return c, fmt.Errorf("held-socket check: %s", v)
		}
		held = append(held, time.Since(start))
	}
	c.fullScan, c.empty, c.orphans, c.held = median(full), median(empty), median(orphans), median(held)
	return c, nil
}

// hostTasks counts processes and threads in /proc.
func hostTasks() (procs, threads int) {
	pids, _ := netns.PIDs()
	for _, pid := range pids {
		if tids, err := netns.Threads(pid); err == nil {
			procs++
			threads += len(tids)
		}
	}
	return procs, threads
}

// gcStale makes n pins of namespaces nothing else holds, whose containers
// are gone (their runtime state directory does not exist), and times
// `sockreap-hook gc` releasing them.
func gcStale(hook, tmp, tag string, n int) (time.Duration, error) {
	stateDir := filepath.Join(tmp, "gc-"+tag)
	store := pin.Store{Dir: stateDir}
	defer func() {
		_ = unix.Unmount(filepath.Join(stateDir, "pins"), unix.MNT_DETACH)
		os.RemoveAll(stateDir)
	}()
	for i := range n {
		ns, err := freshNetns()
		if err != nil {
			return 0, err
		}
		_, err = store.PinNS(ns, pin.Meta{ID: fmt.Sprintf("stale%d", i), RuntimeState: filepath.Join(tmp, "gone", strconv.Itoa(i))})
		ns.Close()
		if err != nil {
			return 0, err
		}
	}
	start := time.Now()
	out, err := exec.Command(hook, "gc", "--state-dir", stateDir, "--log", filepath.Join(tmp, "gc.log"), "--json", "--metrics-dir=").Output()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s gc: %w", hook, err)
	}
	var res []struct{ Action string }
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("gc --json: %w: %s", err, out)
	}
	released := 0
	for _, r := range res {
		if r.Action == "released" {
			released++
		}
	}
	if released != n {
		return 0, fmt.Errorf("gc released %d of %d stale pins: %s", released, n, out)
	}
	return d, nil
}

// freshNetns makes a network namespace that only the returned handle holds:
// a thread unshares one, opens it and ends with its goroutine.
func freshNetns() (*netns.NS, error) {
	type result struct {
		ns  *netns.NS
		err error
	}
	rc := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			rc <- result{nil, fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		ns, err := netns.Open("/proc/thread-self/ns/net")
		rc <- result{ns, err}
	}()
	r := <-rc
	return r.ns, r.err
}
