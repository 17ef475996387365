package suite

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/nettest"
)

// rdsTCPPort is where rds_tcp listens in every namespace once loaded.
const rdsTCPPort = 16385

const (
	solRDS         = 276 // SOL_RDS
	rdsSoTransport = 8   // RDS_SO_TRANSPORT
	rdsTransTCP    = 2   // RDS_TRANS_TCP
)

// requireRDS skips unless RDS over TCP works on this kernel.
func requireRDS(t *T) {
	fd, err := unix.Socket(unix.AF_RDS, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no RDS on this kernel (socket(AF_RDS): %v); the VM kernels load rds and rds_tcp", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, solRDS, rdsSoTransport, rdsTransTCP); err != nil {
		t.Skipf("RDS has no TCP transport here (rds_tcp not loaded?): %v", err)
	}
}

// rdsSocket opens an RDS socket over TCP in n bound to ap.
func rdsSocket(t *T, n *nettest.Netns, ap netip.AddrPort) *nettest.Socket {
	t.Helper()
	var fd int
	err := n.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_RDS, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket(AF_RDS): %w", err)
		}
		if err := unix.SetsockoptInt(fd, solRDS, rdsSoTransport, rdsTransTCP); err != nil {
			unix.Close(fd)
			return fmt.Errorf("RDS_SO_TRANSPORT tcp: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("rds socket in %s: %v", n.Name, err)
	}
	s := &nettest.Socket{FD: fd}
	t.Cleanup(s.Close)
	if err := unix.Bind(fd, nettest.Sockaddr(ap)); err != nil {
		t.Fatalf("rds bind %s in %s: %v", ap, n.Name, err)
	}
	return s
}

// rdsConnect makes rds_tcp open a kernel TCP connection from x to p (x's
// RDS socket sends one message that p's receives) and returns x's socket.
func rdsConnect(t *T, x, p *nettest.Netns, l *nettest.Link) *nettest.Socket {
	t.Helper()
	src := rdsSocket(t, x, netip.AddrPortFrom(l.A4, 4000))
	dst := rdsSocket(t, p, netip.AddrPortFrom(l.B4, 4001))
	_ = unix.SetsockoptTimeval(dst.FD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	if err := unix.Sendto(src.FD, []byte("hello over rds"), 0, nettest.Sockaddr(netip.AddrPortFrom(l.B4, 4001))); err != nil {
		t.Fatalf("rds send %s -> %s: %v", l.A4, l.B4, err)
	}
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(dst.FD, buf, 0)
	if err != nil {
		t.Fatalf("rds receive in %s: %v", p.Name, err)
	}
	t.Logf("rds message crossed a kernel TCP connection: %q", buf[:n])
	dst.Close()
	return src
}

// rdsKernelSockets returns what `sockreap-hook ls` shows as kernel-owned in n.
func rdsKernelSockets(t *T, e *env, n *nettest.Netns) (kernel []lsEntry, all []lsEntry) {
	all = ls(t, e, n)
	for _, s := range all {
		if s.ownerKind() == "kernel" {
			kernel = append(kernel, s)
		}
	}
	return kernel, all
}

// waitQuiet gives rds_tcp's workers a moment to settle (connect or give
// up) after the topology changed.
func waitQuiet() { time.Sleep(300 * time.Millisecond) }
