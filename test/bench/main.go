// Command bench measures how fast sockreap empties a network namespace of
// TCP sockets compared with iproute2's `ss -K` and with no drainer at all,
// on identical, freshly filled namespaces in one run. It prints a table of
// medians and the ratios the project's targets are stated in.
//
// Run as root from the repository root: make bench, or
//
//	go run ./test/bench -n 10000,90000 -reps 3
//
// See docs/bench.md for how to read the output.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	ns      []int
	reps    int
	methods []method
	hook    string
	timeout time.Duration
	profile bool
	noHook  string // why sockreap cannot run, if it cannot
}

func main() {
	if os.Getenv(fillerEnv) != "" {
		os.Exit(fillerMain(os.Args[1:]))
	}
	os.Exit(benchMain())
}

func benchMain() int {
	c, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces): sudo make bench")
		return 2
	}
	for _, tool := range []string{"ip", "ss", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found (apt-get install iproute2 procps, or make deps)\n", tool)
			return 2
		}
	}
	// Whatever ends the bench, its namespaces and fillers go with it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench: %s: removing namespaces and fillers\n", s)
		removeAll()
		os.Exit(130)
	}()
	defer removeAll()
	removeStale()
	// The drains' probe cache goes to a directory of the bench's own.
	if dir, err := os.MkdirTemp("", "sockreap-bench-state-"); err == nil {
		defer os.RemoveAll(dir)
		os.Setenv("SOCKREAP_STATE_DIR", dir)
	}

	results, err := runAll(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	printTable(os.Stdout, c, results)
	if c.profile {
		if err := profile(c); err != nil {
			fmt.Fprintln(os.Stderr, "bench: profile:", err)
			return 1
		}
	}
	return 0
}

func parseFlags() (*config, error) {
	nList := flag.String("n", "10000,90000", "comma-separated socket counts to measure (each N is N/2 loopback connections)")
	reps := flag.Int("reps", 3, "runs of each method at each N; the table shows medians")
	mList := flag.String("methods", "sockreap,ss-K,exit,ss-dump,sockreap-dry", "methods to run: "+methodNames())
	hook := flag.String("hook", "bin/sockreap-hook", "the sockreap-hook binary to measure")
	timeout := flag.Duration("timeout", time.Minute, "drain budget passed to sockreap-hook --timeout (large: the bench measures complete drains)")
	prof := flag.Bool("profile", false, "after the table, profile one sockreap and one ss -K drain at the largest N with perf (syscalls per socket, hottest symbols)")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	c := &config{reps: *reps, timeout: *timeout, profile: *prof}
	for _, s := range strings.Split(*nList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("-n: %q is not a socket count >= 2", s)
		}
		c.ns = append(c.ns, n)
	}
	if c.reps < 1 {
		return nil, fmt.Errorf("-reps must be at least 1")
	}
	for _, s := range strings.Split(*mList, ",") {
		m, ok := methodByName(strings.TrimSpace(s))
		if !ok {
			return nil, fmt.Errorf("-methods: unknown method %q (have %s)", s, methodNames())
		}
		c.methods = append(c.methods, m)
	}
	abs, err := filepath.Abs(*hook)
	if err != nil {
		return nil, fmt.Errorf("-hook %s: %w", *hook, err)
	}
	c.hook = abs
	if t, err := exec.LookPath("/usr/bin/time"); err == nil {
		timeBin = t
	} else {
		fmt.Fprintln(os.Stderr, "bench: GNU time (/usr/bin/time) not found: peak RSS not measured (apt-get install time)")
	}
	// The drain command may not exist yet in a work-in-progress tree: the
	// other methods still run, and the table says why sockreap is missing.
	if out, err := exec.Command(c.hook, "drain", "--help").CombinedOutput(); err != nil {
		c.noHook = fmt.Sprintf("%s drain --help failed (%v): %s", c.hook, err, trim(string(out)))
	}
	return c, nil
}

func methodNames() string {
	var names []string
	for _, m := range methods {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// runAll measures every method reps times at every N, each on its own
// freshly filled namespace. The method order rotates between repetitions so
// that none always runs first (caches, other load on the shared machine).
func runAll(c *config) ([]*result, error) {
	var results []*result
	var usable []method
	for _, m := range c.methods {
		if c.noHook != "" && strings.HasPrefix(m.Name, "sockreap") {
			continue
		}
		usable = append(usable, m)
	}
	if c.noHook != "" {
		fmt.Fprintf(os.Stderr, "bench: skipping the sockreap methods: %s\n", c.noHook)
	}
	fmt.Fprintf(os.Stderr, "bench: %d CPUs, N=%v, %d reps of %s\n", runtime.NumCPU(), c.ns, c.reps, methodNames())
	for _, n := range c.ns {
		for rep := 0; rep < c.reps; rep++ {
			for i := range usable {
				m := usable[(i+rep)%len(usable)]
				r, err := runOne(c, m, n)
				if err != nil {
					return nil, fmt.Errorf("N=%d %s: %w", n, m.Name, err)
				}
				fmt.Fprintf(os.Stderr, "  N=%-6d run %d/%d %-13s wall %8.1f ms  user %8.1f ms  sys %8.1f ms  rss %5.1f MiB  left %d\n",
					r.N, rep+1, c.reps, m.Name, ms(r.Wall), ms(r.User), ms(r.Sys), mib(r.MaxRSS), r.Left.total())
				results = append(results, r)
			}
		}
	}
	return results, nil
}

func runOne(c *config, m method, n int) (*result, error) {
	b, err := newFilledNS(n / 2)
	if err != nil {
		return nil, err
	}
	defer b.remove()
	r, err := m.run(c, b)
	if err != nil {
		return nil, err
	}
	r.Method, r.N = m.Name, b.Before
	if r.Left, err = b.sockets(); err != nil {
		return nil, err
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
