package nettest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The helper processes stand for the users of a namespace that the safety
// check must see: real processes, started from the test binary itself.
const helperEnv = "SOCKREAP_NETTEST_HELPER"

// Helper modes.
const (
	// ThreadListener: a thread other than the leader enters the
	// namespace and listens there; the leader stays outside.
	ThreadListener = "thread-listener"
	// OutsideHolder: a thread enters the namespace, makes a listener and
	// goes back; no thread of the process is inside afterwards.
	OutsideHolder = "outside-holder"
	// Listener: the whole process (started inside the namespace, for
	// example through nsenter) listens.
	Listener = "listener"
)

// RunHelper turns the test binary into a helper process when StartHelper
// started it. Call it first in TestMain of packages that use StartHelper.
func RunHelper() {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	if err := helper(mode, os.Args[1:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for { // hold everything until killed
		time.Sleep(time.Hour)
	}
}

func init() {
	// The leader thread keeps the main goroutine, so the goroutines of
	// a helper that enter a namespace run on other threads.
	if os.Getenv(helperEnv) != "" {
		runtime.LockOSThread()
	}
}

func helper(mode string, args []string) error {
	if len(args) != 2 && mode != Listener || mode == Listener && len(args) != 1 {
		return fmt.Errorf("helper %s: bad arguments %q", mode, args)
	}
	if mode == Listener {
		ap, err := netip.ParseAddrPort(args[0])
		if err != nil {
			return err
		}
		if _, err := listen(ap); err != nil {
			return err
		}
		fmt.Printf("ready %d %d\n", unix.Getpid(), unix.Gettid())
		return nil
	}
	nsPath := args[0]
	ap, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return err
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the process
		tid := unix.Gettid()
		if tid == unix.Getpid() {
			done <- fmt.Errorf("helper goroutine runs on the leader thread")
			return
		}
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		if _, err := listen(ap); err != nil {
			done <- err
			return
		}
		if mode == OutsideHolder {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				done <- fmt.Errorf("setns back: %w", err)
				return
			}
		}
		fmt.Printf("ready %d %d\n", unix.Getpid(), tid)
		done <- nil
		for {
			time.Sleep(time.Hour)
		}
	}()
	return <-done
}

func listen(ap netip.AddrPort) (int, error) {
	fam := unix.AF_INET6
	if ap.Addr().Is4() {
		fam = unix.AF_INET
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, Sockaddr(ap)); err != nil {
		return -1, fmt.Errorf("bind %s: %w", ap, err)
	}
	return fd, unix.Listen(fd, 8)
}

// Helper is a running helper process.
type Helper struct {
	PID, TID int // the process and the thread that entered the namespace
	cmd      *exec.Cmd
}

// StartHelper starts the test binary as a helper process in the given mode
// (args: the namespace path and the listen address; Listener takes only
// the address) behind the optional wrapper command (e.g. nsenter --net=P),
// and waits until it is ready. It is killed at cleanup.
func StartHelper(t testing.TB, wrapper []string, mode string, args ...string) *Helper {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append(append([]string(nil), wrapper...), self), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", mode, err)
	}
	h := &Helper{cmd: cmd}
	t.Cleanup(h.Stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "ready" {
		t.Fatalf("helper %s %q: %q %v", mode, args, line, err)
	}
	h.PID, _ = strconv.Atoi(f[1])
	h.TID, _ = strconv.Atoi(f[2])
	return h
}

// Stop kills the helper and waits for it.
func (h *Helper) Stop() {
	if h.cmd.ProcessState == nil {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	}
}
