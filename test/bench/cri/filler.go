package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/critest"
)

// The full pod's app is this program, run as "/filler filler PAIRS" from
// an image holding it: it opens PAIRS loopback connections in the pod's
// namespace, says "ready" and holds them until it is killed.
const (
	fillerArg   = "filler"
	fillerImage = "docker.io/sockreap-test/filler:1"
)

// startFiller starts the filler in pod p and waits until it holds its
// connections.
func startFiller(t critest.T, p *critest.Pod, pairs int) {
	p.StartImage(t, "filler", fillerImage, "/filler", fillerArg, strconv.Itoa(pairs))
	deadline := time.Now().Add(30 * time.Second)
	for {
		log := p.Log("filler")
		if strings.Contains(log, "ready") {
			return
		}
		if strings.Contains(log, "filler:") || time.Now().After(deadline) {
			t.Fatalf("filler in pod %s did not get ready: %q", p.ID, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fillerMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "filler: usage: filler PAIRS")
		return 2
	}
	pairs, err := strconv.Atoi(args[0])
	if err != nil || pairs <= 0 {
		fmt.Fprintf(os.Stderr, "filler: PAIRS %q is not a positive number\n", args[0])
		return 2
	}
	if err := fill(pairs); err != nil {
		fmt.Println("filler:", err)
		return 1
	}
	fmt.Printf("ready %d sockets\n", 2*pairs)
	for {
		time.Sleep(time.Hour)
	}
}

// fill opens pairs loopback TCP connections and keeps both ends (and the
// listener) open.
func fill(pairs int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	for i := range pairs {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if err := unix.Connect(c, addr); err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		if _, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC); err != nil {
			return fmt.Errorf("accept %d: %w", i, err)
		}
	}
	return nil
}
