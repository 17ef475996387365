package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// profile looks inside one sockreap drain and one ss -K drain at the
// largest N with perf: the syscalls each makes per socket and how its
// threads share them (perf trace -s), and where the CPU goes, kernel
// included (perf record). The numbers are for tuning the engine; perf's own
// overhead makes the times larger than in the table.
func profile(c *config) error {
	if _, err := exec.LookPath("perf"); err != nil {
		return fmt.Errorf("perf not found (Debian: apt-get install linux-perf)")
	}
	n := slices.Max(c.ns)
	dir, err := os.MkdirTemp("", "sockreap-bench-profile-")
	if err != nil {
		return fmt.Errorf("profile directory: %w", err)
	}
	// bin/ is stripped (-s -w); an unstripped build lets perf name
	// sockreap's own Go functions.
	hook := dir + "/sockreap-hook"
	if err := run("go", "build", "-o", hook, "./hook"); err != nil {
		fmt.Fprintf(os.Stderr, "bench: profile: unstripped build failed, profiling %s: %v\n", c.hook, err)
		hook = c.hook
	}
	drainers := []struct {
		name string
		cmd  func(b *benchNS) []string
	}{
		{"sockreap", func(b *benchNS) []string {
			return []string{hook, "drain", "--netns", b.Path, "--json", "--force", "--timeout", c.timeout.String(), "--metrics-dir="}
		}},
		{"ss-K", func(b *benchNS) []string { return []string{"ip", "netns", "exec", b.Name, "ss", "-K", "-t", "-a"} }},
	}
	if c.noHook != "" {
		drainers = drainers[1:]
	}
	fmt.Printf("\nProfile at N≈%d (one run each under perf; perf slows things, read shares and counts, not times)\n", n)
	fmt.Printf("perf data and traces kept in %s\n", dir)
	for _, d := range drainers {
		trace := fmt.Sprintf("%s/%s.trace", dir, d.name)
		b, err := newFilledNS(n / 2)
		if err != nil {
			return err
		}
		args := append([]string{"trace", "-s", "-o", trace, "--"}, d.cmd(b)...)
		err = runQuiet("perf", args...)
		b.remove()
		if err != nil {
			return err
		}
		if err := printTrace(trace, d.name, b.Before); err != nil {
			return err
		}

		data := fmt.Sprintf("%s/%s.perf.data", dir, d.name)
		if b, err = newFilledNS(n / 2); err != nil {
			return err
		}
		args = append([]string{"record", "-q", "-g", "-F", "4999", "-o", data, "--"}, d.cmd(b)...)
		err = runQuiet("perf", args...)
		b.remove()
		if err != nil {
			return err
		}
		fmt.Printf("  CPU samples by thread (is the work spread over the cores?):\n")
		if err := printReport(data, 8, "--sort", "pid"); err != nil {
			return err
		}
		fmt.Printf("  CPU samples kernel vs user:\n")
		if err := printReport(data, 4, "--sort", "dso"); err != nil {
			return err
		}
		fmt.Printf("  where the time goes (inclusive: %% of samples in the function and what it calls):\n")
		if err := printPhases(data); err != nil {
			return err
		}
		fmt.Printf("  hottest functions, self time (kernel and user):\n")
		if err := printReport(data, 22, "--sort", "dso,sym"); err != nil {
			return err
		}
		fmt.Printf("  (call graphs: perf report -i %s --no-children)\n", data)
	}
	return nil
}

// printTrace sums a `perf trace -s` summary over threads: calls per socket
// of each syscall, and the time each busy thread spent inside syscalls.
func printTrace(path, name string, sockets int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read perf trace summary: %w", err)
	}
	defer f.Close()
	type agg struct {
		calls, errs int
		msec        float64
	}
	calls := map[string]*agg{}
	type thread struct {
		name string
		msec float64
	}
	var threads []*thread
	var cur *thread
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		fs := strings.Fields(l)
		// " sockreap-hook (1234), 56 events, 7.8%" starts a thread.
		if len(fs) >= 3 && strings.HasPrefix(fs[1], "(") && strings.HasSuffix(fs[1], "),") {
			cur = &thread{name: fs[0] + " " + strings.TrimSuffix(fs[1], ",")}
			threads = append(threads, cur)
			continue
		}
		if len(fs) != 8 || cur == nil {
			continue
		}
		c, err1 := strconv.Atoi(fs[1])
		e, err2 := strconv.Atoi(fs[2])
		ms, err3 := strconv.ParseFloat(fs[3], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		a := calls[fs[0]]
		if a == nil {
			a = &agg{}
			calls[fs[0]] = a
		}
		a.calls += c
		a.errs += e
		a.msec += ms
		cur.msec += ms
	}
	names := make([]string, 0, len(calls))
	total := 0
	for k, a := range calls {
		names = append(names, k)
		total += a.calls
	}
	sort.Slice(names, func(i, j int) bool { return calls[names[i]].calls > calls[names[j]].calls })
	fmt.Printf("\n%s on %d sockets: %d syscalls, %.2f per socket, %d threads\n", name, sockets, total, float64(total)/float64(sockets), len(threads))
	fmt.Printf("  %-16s %9s %11s %7s %12s\n", "syscall", "calls", "per socket", "errors", "in syscall ms")
	for i, k := range names {
		a := calls[k]
		if i >= 8 || a.calls < 10 {
			break
		}
		fmt.Printf("  %-16s %9d %11.3f %7d %12.1f\n", k, a.calls, float64(a.calls)/float64(sockets), a.errs, a.msec)
	}
	sort.Slice(threads, func(i, j int) bool { return threads[i].msec > threads[j].msec })
	var busy []string
	for _, t := range threads {
		if t.msec >= 1 && len(busy) < 6 {
			busy = append(busy, fmt.Sprintf("%s %.0f ms", t.name, t.msec))
		}
	}
	fmt.Printf("  time inside syscalls by thread: %s\n", strings.Join(busy, "; "))
	return nil
}

// printReport prints the first lines of a perf report, comments dropped.
func printReport(data string, lines int, sortArgs ...string) error {
	args := append([]string{"report", "-i", data, "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.8"}, sortArgs...)
	out, err := exec.Command("perf", args...).Output()
	if err != nil {
		return fmt.Errorf("perf report %s: %w", data, err)
	}
	shown := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if shown++; shown > lines {
			break
		}
		fmt.Printf("    %s\n", strings.TrimSpace(l))
	}
	return nil
}

// runQuiet runs a command under perf with its output discarded unless it
// fails. perf passes on the drainer's exit code; 1 (sockets remain) is a
// result, not a failure.
func runQuiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, trim(string(out)))
	}
	return nil
}

// phaseSyms are the kernel and Go runtime functions that mark a phase of a
// drain: the destroy path, the dump, netlink I/O, /proc scans, the peer's
// RST handling on loopback, the Go runtime's own work.
var phaseSyms = map[string]bool{
	"inet_diag_cmd_exact": true, "tcp_abort": true, "tcp_send_active_reset": true,
	"netlink_dump": true, "inet_diag_dump": true, "__inet_diag_dump": true,
	"netlink_sendmsg": true, "netlink_recvmsg": true,
	"tcp_v4_rcv": true, "tcp_v6_rcv": true, "tcp_done": true,
	"do_readlinkat.part.0": true, "do_readlinkat": true, "proc_readfd_common": true, "iterate_dir": true,
	"runtime.gcBgMarkWorker": true, "runtime.mallocgc": true, "runtime.schedule": true,
	"setns": true, "__x64_sys_setns": true, "exit_to_user_mode_loop": true,
}

// printPhases prints the inclusive share of the phase functions and of
// sockreap's own functions.
func printPhases(data string) error {
	out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--children", "-g", "none",
		"--sort", "sym", "--percent-limit", "1").Output()
	if err != nil {
		return fmt.Errorf("perf report --children %s: %w", data, err)
	}
	shown := 0
	for _, l := range strings.Split(string(out), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 4 || strings.HasPrefix(l, "#") {
			continue
		}
		sym := strings.Join(fs[3:], " ")
		own := strings.HasPrefix(sym, "github.com/sockreap/") && !strings.Contains(sym, "/cli.")
		if !phaseSyms[sym] && !own {
			continue
		}
		if shown++; shown > 24 {
			break
		}
		fmt.Printf("    %7s  %s\n", fs[0], sym)
	}
	return nil
}
