// Command demo is the socket helper of scripts/demo.sh (make demo). It plays
// the two ends of a stuck connection, each run inside a namespace with
// `ip netns exec`:
//
//	demo peer ADDR:PORT     listen, accept one connection, never read it;
//	                        hold it until killed
//	demo client ADDR:PORT   connect, write until the peer's window is
//	                        closed, then exit with the data still unsent,
//	                        which leaves an orphan in FIN-WAIT-1
//	demo spec CONFIG ARG... set the process of a `runc spec` config.json:
//	                        these arguments, no terminal
//
// Only the script's own namespaces are used; addresses come from
// 192.0.2.0/24 or 2001:db8::/32.
package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) >= 4 && os.Args[1] == "spec" {
		if err := spec(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintf(os.Stderr, "demo spec: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 3 {
		usage()
	}
	ap, err := netip.ParseAddrPort(os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %q is not ADDR:PORT: %v\n", os.Args[2], err)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "peer":
		err = peer(ap)
	case "client":
		err = client(ap)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demo (peer|client) ADDR:PORT | demo spec CONFIG.JSON ARG...")
	os.Exit(2)
}

// peerRcvbuf is small so that the client fills the peer's window quickly.
const peerRcvbuf = 4096

// peer accepts one connection and never reads from it: its receive buffer
// fills and it advertises a zero window, like a hung application.
func peer(ap netip.AddrPort) error {
	fd, err := unix.Socket(family(ap), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	// Set before listen so that the accepted socket inherits it and the
	// window it announces in the handshake is already small.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, peerRcvbuf); err != nil {
		return fmt.Errorf("SO_RCVBUF: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		return fmt.Errorf("listen %s: %w", ap, err)
	}
	fmt.Printf("peer: listening on %s (receive buffer %d bytes, will never read)\n", ap, peerRcvbuf)
	cfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept on %s: %w", ap, err)
	}
	fmt.Printf("peer: accepted a connection; not reading from it\n")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	// Exit without a RST: the script decides how the connection ends.
	_ = cfd
	return nil
}

// client connects and writes until nothing more fits: the peer's receive
// buffer is full (zero window) and our send buffer holds the rest. Then it
// exits; the kernel keeps the socket as an orphan that still owes the peer
// its data and a FIN.
func client(ap netip.AddrPort) error {
	fd, err := unix.Socket(family(ap), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sockaddr(ap)); err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("non-blocking: %w", err)
	}
	buf := make([]byte, 16<<10)
	total := 0
	// Write until the kernel refuses twice with a pause between: the
	// second refusal means the peer took nothing more meanwhile.
	for refusals := 0; refusals < 2; {
		n, err := unix.Write(fd, buf)
		switch {
		case err == unix.EAGAIN:
			refusals++
			time.Sleep(300 * time.Millisecond)
		case err != nil:
			return fmt.Errorf("write to %s: %w", ap, err)
		default:
			total += n
			refusals = 0
		}
	}
	fmt.Printf("client: wrote %d bytes to %s; the peer stopped reading and its window is closed\n", total, ap)
	fmt.Printf("client: exiting without waiting: the kernel keeps the unsent data and the socket\n")
	return nil
}

func family(ap netip.AddrPort) int {
	if ap.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// spec points the process of the config.json at path to args, without a
// terminal, keeping every other field.
func spec(path string, args []string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc, ok := doc["process"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s has no process object", path)
	}
	proc["terminal"] = false
	proc["args"] = args
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}
