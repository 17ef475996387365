package critest

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
)

// Peer is a TCP peer on the daemon's CNI bridge, in a namespace of its
// own: it accepts connections from pods and never reads them, with
// keepalive off, so a pod's unsent data stays queued and the pod's
// socket, once its process is gone, is an orphan that holds the pod's
// namespace for minutes.
type Peer struct {
	Addr  netip.AddrPort
	name  string
	ns    *netns.NS
	ln    int
	conns []int
}

// NewPeer plugs a peer into d's bridge, listening on port. Peers get
// .2-.15 of the pods' subnet, below the host-local range.
func (d *Daemon) NewPeer(t T, port uint16) *Peer {
	t.Helper()
	i := d.peers % 14
	d.peers++
	p := &Peer{Addr: netip.AddrPortFrom(d.addr(2+i), port), name: nettest.Unique("srcp"), ln: -1}
	must(t, "ip", "netns", "add", p.name)
	hostEnd := nettest.Unique("srcv")
	t.Cleanup(func() {
		for _, fd := range append(p.conns, p.ln) {
			if fd >= 0 {
				_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				unix.Close(fd)
			}
		}
		if p.ns != nil {
			p.ns.Close()
		}
		_, _ = run("ip", "link", "del", hostEnd)
		_, _ = run("ip", "netns", "del", p.name)
	})
	must(t, "ip", "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	must(t, "ip", "link", "set", hostEnd, "master", d.Bridge, "up")
	must(t, "ip", "-n", p.name, "addr", "add", fmt.Sprintf("%s/%d", p.Addr.Addr(), d.Subnet.Bits()), "dev", "eth0")
	must(t, "ip", "-n", p.name, "link", "set", "eth0", "up")
	must(t, "ip", "-n", p.name, "link", "set", "lo", "up")
	ns, err := netns.Open("/var/run/netns/" + p.name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	p.ns = ns
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		p.ln = fd
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		// A tiny receive buffer shuts the window after a few KB.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: p.Addr.Addr().As4(), Port: int(port)}); err != nil {
			return err
		}
		return unix.Listen(fd, 64)
	})
	if err != nil {
		t.Fatalf("peer listener on %s: %v", p.Addr, err)
	}
	return p
}

// Accept accepts n connections (waiting up to 30 s), turns keepalive off
// on them and keeps them open, never reading.
func (p *Peer) Accept(t T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := 0; got < n; {
		fd, _, err := unix.Accept4(p.ln, unix.SOCK_CLOEXEC)
		if err == unix.EAGAIN {
			if time.Now().After(deadline) {
				t.Fatalf("peer %s: %d of %d connections within 30s", p.Addr, got, n)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("peer %s: accept: %v", p.Addr, err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
		p.conns = append(p.conns, fd)
		got++
	}
}

// OrphanCommand is an app container's command that connects to the peer
// and streams zeros into it forever: once the peer's window is shut the
// data stays queued in the pod's namespace.
func (p *Peer) OrphanCommand() []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf("exec nc %s %d </dev/zero", p.Addr.Addr(), p.Addr.Port())}
}

// WaitStuck waits until n connections in namespace netnsPath to the peer
// have unsent data queued, and accepts them on the peer side.
func (p *Peer) WaitStuck(t T, netnsPath string, n int) {
	t.Helper()
	var out string
	took := nettest.WaitUntil(30*time.Second, func() bool {
		out, _ = run("nsenter", "--net="+netnsPath, "ss", "-tnH", "state", "established", "dst", p.Addr.String())
		stuck := 0
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 2 {
				if q, _ := strconv.Atoi(f[1]); q > 0 {
					stuck++
				}
			}
		}
		return stuck >= n
	})
	if took < 0 {
		t.Fatalf("not %d connections with data queued from %s to %s:\n%s", n, netnsPath, p.Addr, out)
	}
	p.Accept(t, n)
}

// Witness tells when a network namespace is freed without holding it: it
// gives the namespace an id (nsid) inside a namespace of its own, and the
// kernel removes that id when the namespace dies.
type Witness struct {
	name string
	nsid string
}

// Watch starts watching the namespace mounted at path (under
// /var/run/netns).
func Watch(t T, path string) *Witness {
	t.Helper()
	w := &Witness{name: nettest.Unique("srcw"), nsid: "7"}
	must(t, "ip", "netns", "add", w.name)
	t.Cleanup(func() { _, _ = run("ip", "netns", "del", w.name) })
	must(t, "ip", "-n", w.name, "netns", "set", filepath.Base(path), w.nsid)
	if w.Gone() {
		t.Fatalf("witness %s: nsid %s of %s not listed", w.name, w.nsid, path)
	}
	return w
}

// Gone reports whether the watched namespace is freed.
func (w *Witness) Gone() bool {
	out, err := run("ip", "-n", w.name, "netns", "list-id")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "nsid" && f[1] == w.nsid {
			return false
		}
	}
	return true
}

// Freed waits up to d for the namespace to be freed and returns how long
// that took, or -1 if it is still there.
func (w *Witness) Freed(d time.Duration) time.Duration {
	return nettest.WaitUntil(d, w.Gone)
}
