// Package load gives a benchmark a node-like host: N sleeping background
// processes holding T threads in all (a real node runs thousands of
// processes and tens of thousands of threads), every one of them the
// benchmark's own and killed when it stops or dies.
//
// Most processes are plain `sleep`s (one thread each); the threads live in
// a few re-executions of the benchmark binary, each parking goroutines on
// locked OS threads. A program using the package calls Main first thing in
// main.
package load

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

const helperEnv = "SOCKREAP_BENCH_LOAD_THREADS"

// threadsPerHolder is how many threads one thread-holding process parks.
const threadsPerHolder = 1000

// Main turns the binary into a thread holder when Start started it.
func Main() {
	v := os.Getenv(helperEnv)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		os.Exit(2)
	}
	debug.SetMaxThreads(n + 100)
	never := make(chan struct{})
	ready := make(chan struct{})
	for range n - 1 {
		go func() {
			runtime.LockOSThread() // the goroutine keeps its thread, asleep
			ready <- struct{}{}
			<-never
		}()
		<-ready
	}
	fmt.Println("ready")
	// Exit when the benchmark closes stdin (or dies: parent-death signal).
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// Load is a running background load.
type Load struct {
	Processes, Threads int // as started
	cmds               []*exec.Cmd
	stdins             []*os.File
	oldPidMax          string // kernel.pid_max to restore, "" if unchanged
}

const pidMaxFile = "/proc/sys/kernel/pid_max"

// pidHeadroom is how many free pids the load leaves to everything else.
const pidHeadroom = 8192

// makeRoom raises kernel.pid_max when the load's threads (each takes a
// pid) would leave fewer than pidHeadroom pids free: 30,000 threads do not
// fit the default 32,768 beside a busy host. Stop restores it.
func (l *Load) makeRoom(threads int) error {
	b, err := os.ReadFile(pidMaxFile)
	if err != nil {
		return nil // cannot tell: try anyway
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	// The fourth field of /proc/loadavg is running/total tasks.
	tasks := 0
	if lb, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(lb)); len(f) >= 4 {
			_, t, _ := strings.Cut(f[3], "/")
			tasks, _ = strconv.Atoi(t)
		}
	}
	need := tasks + threads + pidHeadroom
	if need <= pidMax {
		return nil
	}
	want := strconv.Itoa(max(need, 2*pidMax))
	if err := os.WriteFile(pidMaxFile, []byte(want), 0); err != nil {
		return fmt.Errorf("%d threads need kernel.pid_max of at least %d (now %d), and raising it failed: %w", threads, need, pidMax, err)
	}
	l.oldPidMax = strings.TrimSpace(string(b))
	fmt.Fprintf(os.Stderr, "load: raised kernel.pid_max from %s to %s for the run\n", l.oldPidMax, want)
	return nil
}

// Start starts procs background processes with threads threads in all
// (at least one per process). Stop removes them.
func Start(procs, threads int) (*Load, error) {
	l := &Load{}
	if procs <= 0 {
		return l, nil
	}
	threads = max(threads, procs)
	if err := l.makeRoom(threads); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return nil, errors.New("needs sleep (coreutils)")
	}
	// Holders take the threads beyond one per process.
	extra := threads - procs
	holders := min((extra+threadsPerHolder-1)/threadsPerHolder, procs)
	for i := range procs {
		var cmd *exec.Cmd
		if i < holders {
			n := extra/holders + 1 // its share of the extra threads, and its leader
			if i < extra%holders {
				n++
			}
			cmd = exec.Command(self)
			cmd.Env = append(os.Environ(), helperEnv+"="+strconv.Itoa(n))
			l.Threads += n
		} else {
			cmd = exec.Command(sleep, "infinity")
			l.Threads++
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var out *bufio.Reader
		if i < holders {
			r, w, err := os.Pipe()
			if err != nil {
				l.Stop()
				return nil, err
			}
			cmd.Stdin = r
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				l.Stop()
				return nil, err
			}
			out = bufio.NewReader(stdout)
			l.stdins = append(l.stdins, w)
			defer r.Close()
		}
		if err := cmd.Start(); err != nil {
			l.Stop()
			return nil, fmt.Errorf("start background process %d of %d: %w", i+1, procs, err)
		}
		l.cmds = append(l.cmds, cmd)
		l.Processes++
		if out != nil {
			if line, err := out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
				l.Stop()
				return nil, fmt.Errorf("thread holder %d: %q %v", i, line, err)
			}
		}
	}
	return l, nil
}

// Stop kills every background process and waits for them.
func (l *Load) Stop() {
	if l == nil {
		return
	}
	for _, w := range l.stdins {
		w.Close()
	}
	for _, c := range l.cmds {
		_ = c.Process.Kill()
	}
	for _, c := range l.cmds {
		_ = c.Wait()
	}
	l.cmds, l.stdins = nil, nil
	if l.oldPidMax != "" {
		// Pids above the old limit stay valid; only new ones wrap lower.
		_ = os.WriteFile(pidMaxFile, []byte(l.oldPidMax), 0)
		l.oldPidMax = ""
	}
}

// String describes the load.
func (l *Load) String() string {
	if l == nil || l.Processes == 0 {
		return "idle"
	}
	return fmt.Sprintf("%d processes, %d threads", l.Processes, l.Threads)
}
