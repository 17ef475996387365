package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/netns"
)

// The bench re-executes itself in "filler" mode to hold a share of a
// namespace's sockets open: one process cannot, because this machine's
// open-file hard limit (20000) is below the socket counts measured.
const fillerEnv = "SOCKREAP_BENCH_FILLER"

// maxPairsPerFiller keeps a filler's descriptors (two per connection, two
// listeners, stdio) safely under the 20000 open-file hard limit.
const maxPairsPerFiller = 9000

// fillerMain is the child side: enter the namespace, open the connections,
// say "ready" with the CPU spent so far, then hold everything until stdin
// closes (the bench closes it, or dies).
func fillerMain(args []string) int {
	fs := flag.NewFlagSet("filler", flag.ContinueOnError)
	path := fs.String("netns", "", "namespace to fill")
	pairs := fs.Int("pairs", 0, "loopback connections to open (two sockets each)")
	port := fs.Int("port", 0, "listening port, on 127.0.0.1 and ::1")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ns, err := netns.Open(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "filler:", err)
		return 1
	}
	// Sockets created inside Do belong to the namespace for good.
	if err := ns.Do(func() error { return openPairs(*pairs, *port) }); err != nil {
		fmt.Fprintf(os.Stderr, "filler %s: %v\n", *path, err)
		return 1
	}
	ns.Close()
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	fmt.Printf("ready %d %d\n", tvMicros(ru.Utime), tvMicros(ru.Stime))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// openPairs opens pairs loopback TCP connections, alternating IPv4 and IPv6,
// and keeps both ends of each (and the listeners) open.
func openPairs(pairs, port int) error {
	type family struct {
		dom  int
		addr unix.Sockaddr
	}
	fams := []family{
		{unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}},
		{unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: port}},
	}
	listeners := make([]int, len(fams))
	for i, f := range fams {
		fd, err := unix.Socket(f.dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("listener socket: %w", err)
		}
		if err := unix.Bind(fd, f.addr); err != nil {
			return fmt.Errorf("bind listener %s port %d: %w", famName(f.dom), port, err)
		}
		if err := unix.Listen(fd, 4096); err != nil {
			return fmt.Errorf("listen %s port %d: %w", famName(f.dom), port, err)
		}
		listeners[i] = fd
	}
	for i := 0; i < pairs; i++ {
		f := fams[i%2]
		c, err := unix.Socket(f.dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("client socket %d: %w", i, err)
		}
		// On loopback the handshake completes inside connect, so the
		// accept right after never blocks and the backlog stays short.
		if err := unix.Connect(c, f.addr); err != nil {
			return fmt.Errorf("connect %d to %s port %d: %w", i, famName(f.dom), port, err)
		}
		if _, _, err := unix.Accept4(listeners[i%2], unix.SOCK_CLOEXEC); err != nil {
			return fmt.Errorf("accept %d: %w", i, err)
		}
	}
	return nil
}

func famName(dom int) string {
	if dom == unix.AF_INET {
		return "127.0.0.1"
	}
	return "::1"
}

func tvMicros(tv unix.Timeval) int64 { return tv.Sec*1e6 + tv.Usec }

// filler is the parent's handle on a running filler process.
type filler struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// CPU the filler spent opening its sockets, subtracted from its final
	// rusage when its exit is what is measured.
	fillUser, fillSys time.Duration

	mu   sync.Mutex // kill may race between the main loop and an interrupt
	done bool
}

// startFiller starts a filler for pairs connections in the namespace at path
// and waits until it holds them all.
func startFiller(path string, pairs, port int, timeout time.Duration) (*filler, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the filler: %w", err)
	}
	cmd := exec.Command(self, "-netns", path, "-pairs", strconv.Itoa(pairs), "-port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), fillerEnv+"=1")
	cmd.Stderr = os.Stderr
	// Dies with the bench, whatever kills the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("filler stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("filler stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start filler: %w", err)
	}
	f := &filler{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		var u, sy int64
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "ready %d %d", &u, &sy); err != nil {
			f.kill()
			return nil, fmt.Errorf("filler for %s (%d connections) failed (said %q)", path, pairs, strings.TrimSpace(s))
		}
		f.fillUser, f.fillSys = time.Duration(u)*time.Microsecond, time.Duration(sy)*time.Microsecond
		return f, nil
	case <-time.After(timeout):
		f.kill()
		return nil, fmt.Errorf("filler for %s (%d connections) not ready after %s", path, pairs, timeout)
	}
}

// kill ends the filler and reaps it; the kernel closes what it held.
// It returns the process's final state (nil if it was already reaped).
func (f *filler) kill() *os.ProcessState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return nil
	}
	f.done = true
	_ = f.cmd.Process.Kill()
	err := f.cmd.Wait()
	f.stdin.Close()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil
	}
	return f.cmd.ProcessState
}
