package suite

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
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

// OnDemandModule reports whether a module of the initramfs (path
// modules/NN-name.ko) is loaded by the kernel scenarios rather than at boot.
func OnDemandModule(path string) bool {
	base := path[strings.LastIndexByte(path, '/')+1:]
	_, name, _ := strings.Cut(strings.TrimSuffix(base, ".ko"), "-")
	return name == "rds" || strings.HasPrefix(name, "rds_")
}

// loadOnDemandModules loads the on-demand modules the initramfs carries
// (none on the host, where the kernel has RDS built in or not at all).
func loadOnDemandModules(t *T) {
	order, err := os.ReadFile("/modules/order")
	if err != nil {
		return
	}
	for _, p := range strings.Fields(string(order)) {
		if !OnDemandModule(p) {
			continue
		}
		data, err := os.ReadFile("/" + p)
		if err != nil {
			t.Fatalf("read module %s: %v", p, err)
		}
		if err := unix.InitModule(data, ""); err != nil && err != unix.EEXIST {
			t.Fatalf("load module %s: %v", p, err)
		}
		t.Logf("loaded %s", p)
	}
}

// requireRDS skips unless RDS over TCP works on this kernel.
func requireRDS(t *T) {
	loadOnDemandModules(t)
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
	// rds_tcp may still be backing off a reconnect from an earlier
	// scenario's pair: send again a few times before giving up.
	buf := make([]byte, 64)
	var n int
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = unix.Sendto(src.FD, []byte("hello over rds"), 0, nettest.Sockaddr(netip.AddrPortFrom(l.B4, 4001))); err != nil {
			t.Logf("rds send %s -> %s (attempt %d): %v", l.A4, l.B4, attempt, err)
			time.Sleep(time.Second)
			continue
		}
		if n, _, err = unix.Recvfrom(dst.FD, buf, 0); err == nil {
			break
		}
		t.Logf("rds receive in %s (attempt %d): %v", p.Name, attempt, err)
	}
	if err != nil {
		t.Fatalf("rds message %s -> %s never arrived: %v", l.A4, l.B4, err)
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
