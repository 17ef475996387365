package reap_test

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// fixture is a target namespace X linked to a peer namespace P.
type fixture struct {
	x, p *nettest.Netns
	link *nettest.Link
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	nettest.RequireRoot(t)
	f := &fixture{x: nettest.NewNetns(t), p: nettest.NewNetns(t)}
	f.link = nettest.Connect(t, f.x, f.p)
	return f
}

// families yields the X and P addresses of the link for IPv4 and IPv6.
func (f *fixture) families() [][2]netip.Addr {
	return [][2]netip.Addr{{f.link.A4, f.link.B4}, {f.link.A6, f.link.B6}}
}

// stateCounts dumps X with a fresh sock_diag socket.
func stateCounts(t *testing.T, n *nettest.Netns) map[string]int {
	t.Helper()
	socks, err := reap.List(n.NS)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := range socks {
		counts[sockdiag.ProtocolName(socks[i].Protocol)+"/"+socks[i].State.String()]++
	}
	return counts
}

// waitState polls X until the dump shows at least n sockets in key.
func waitState(t *testing.T, x *nettest.Netns, key string, n int) {
	t.Helper()
	if nettest.WaitUntil(20*time.Second, func() bool { return stateCounts(t, x)[key] >= n }) < 0 {
		t.Fatalf("no %d sockets in %s appeared; have %v", n, key, stateCounts(t, x))
	}
}

// makeOrphans leaves, for each family, orphans in FIN-WAIT-1 (zero window),
// FIN-WAIT-2, CLOSING and LAST-ACK, plus TIME-WAIT, in X: everything a dead
// container's process leaves behind. The peer sockets in P stay open (and
// are reset at cleanup).
func (f *fixture) makeOrphans(t *testing.T) {
	t.Helper()
	for i, fam := range f.families() {
		port := uint16(7000 + 10*i)
		lst := f.p.Listen(t, netip.AddrPortFrom(fam[1], port), 64, 4096)
		dial := func() (*nettest.Socket, *nettest.Socket) {
			c := f.x.Dial(t, netip.AddrPortFrom(fam[1], port))
			return c, nettest.Accept(t, lst)
		}
		// FIN-WAIT-1: the peer never reads, the window closes, close().
		c, _ := dial()
		nettest.Fill(t, c)
		c.Close()
		// FIN-WAIT-2: close(); the peer acks the FIN and never closes.
		c, _ = dial()
		c.Close()
		// CLOSING: unsent data to a zero window, close(), then the peer's FIN.
		c, s := dial()
		nettest.Fill(t, c)
		c.Close()
		_ = unix.Shutdown(s.FD, unix.SHUT_WR)
		// LAST-ACK: the peer closes first, we write into its zero window
		// and close.
		c, s = dial()
		_ = unix.Shutdown(s.FD, unix.SHUT_WR)
		waitState(t, f.x, "tcp/CLOSE-WAIT", 1)
		nettest.Fill(t, c)
		c.Close()
		// TIME-WAIT: we close first, the peer closes too.
		c, s = dial()
		c.Close()
		s.Close()
	}
	for _, key := range []string{"tcp/FIN-WAIT-1", "tcp/FIN-WAIT-2", "tcp/CLOSING", "tcp/LAST-ACK", "tcp/TIME-WAIT"} {
		waitState(t, f.x, key, 2)
	}
}

// makeLive opens, for each family, sockets a running container holds: a
// listener with pending (unaccepted) connections and request sockets, an
// established connection, a connection in SYN-SENT, connected and bound UDP.
func (f *fixture) makeLive(t *testing.T) []*nettest.Socket {
	t.Helper()
	var held []*nettest.Socket
	for i, fam := range f.families() {
		port := uint16(8000 + 10*i)
		// Listener in X; P connects twice, nobody accepts.
		lst := f.x.Listen(t, netip.AddrPortFrom(fam[0], port), 16, 0)
		f.p.Dial(t, netip.AddrPortFrom(fam[0], port))
		f.p.Dial(t, netip.AddrPortFrom(fam[0], port))
		// A deferred-accept listener keeps connections without data as
		// request sockets (NEW-SYN-RECV).
		dl := f.x.NewSocket(t, unix.SOCK_STREAM, fam[0])
		_ = unix.SetsockoptInt(dl.FD, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 30)
		if err := unix.Bind(dl.FD, nettest.Sockaddr(netip.AddrPortFrom(fam[0], port+1))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(dl.FD, 16); err != nil {
			t.Fatal(err)
		}
		f.p.Dial(t, netip.AddrPortFrom(fam[0], port+1))
		// Established from X to P.
		pl := f.p.Listen(t, netip.AddrPortFrom(fam[1], port), 16, 0)
		est := f.x.Dial(t, netip.AddrPortFrom(fam[1], port))
		nettest.Accept(t, pl)
		// SYN-SENT: an address on the link that nobody answers for.
		var dead netip.Addr
		if fam[0].Is4() {
			dead = netip.MustParseAddr("192.0.2.254")
			f.x.Exec(t, "ip", "route", "add", "192.0.2.254/32", "dev", f.link.NameA)
		} else {
			dead = fam[0].Prev() // ::0 of the /126: unowned
		}
		syn := f.x.DialAsync(t, netip.AddrPortFrom(dead, 9))
		// UDP: connected and bound.
		uc := f.x.BindUDP(t, netip.AddrPortFrom(fam[0], 0), netip.AddrPortFrom(fam[1], 53))
		ub := f.x.BindUDP(t, netip.AddrPortFrom(fam[0], port), netip.AddrPort{})
		held = append(held, lst, dl, est, syn, uc, ub)
	}
	waitState(t, f.x, "tcp/SYN-RECV", 2)
	waitState(t, f.x, "tcp/SYN-SENT", 2)
	return held
}

func TestDrainOrphans(t *testing.T) {
	f := newFixture(t)
	f.makeOrphans(t)
	before := stateCounts(t, f.x)
	t.Logf("before: %v", before)

	rep, err := reap.Drain(context.Background(), f.x.NS, reap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", rep)
	if left := stateCounts(t, f.x); len(left) != 0 {
		t.Errorf("sockets left after drain: %v", left)
	}
	if ss := f.x.SS(t); len(ss) != 0 {
		t.Errorf("ss still lists:\n%s", strings.Join(ss, "\n"))
	}
	if rep.Remaining != 0 || rep.Found < 10 || rep.Destroyed < 8 {
		t.Errorf("report: found %d destroyed %d remaining %d", rep.Found, rep.Destroyed, rep.Remaining)
	}
	// By class, for metrics: every socket found and destroyed, the
	// orphans as orphans, TIME-WAIT as mini (and so FIN-WAIT-2, which the
	// kernel keeps as a time-wait mini socket).
	if n := groupSum(rep.FoundBy, ""); n != rep.Found {
		t.Errorf("FoundBy counts %d, Found %d: %+v", n, rep.Found, rep.FoundBy)
	}
	if n := groupSum(rep.DestroyedBy, ""); n != rep.Destroyed {
		t.Errorf("DestroyedBy counts %d, Destroyed %d: %+v", n, rep.Destroyed, rep.DestroyedBy)
	}
	if groupSum(rep.DestroyedBy, reap.OwnerOrphan) < 6 || groupSum(rep.FoundBy, reap.OwnerMini) == 0 {
		t.Errorf("by owner: found %+v, destroyed %+v; want the orphans destroyed as orphans and TIME-WAIT found as mini", rep.FoundBy, rep.DestroyedBy)
	}

	// The namespace is now free to go: deleting it removes the veth end
	// in P at once.
	gone := nettest.DeleteAndWatch(t, f.x, f.p, f.link.NameB, nettest.FreeWait)
	if gone < 0 {
		t.Fatalf("netns X still alive %v after deletion although drained", nettest.FreeWait)
	}
}

func TestUndrainedOrphanKeepsNetnsAlive(t *testing.T) {
	f := newFixture(t)
	f.makeOrphans(t)
	// Control: without a drain the orphans hold X and its veth.
	if gone := nettest.DeleteAndWatch(t, f.x, f.p, f.link.NameB, time.Second); gone >= 0 {
		t.Fatalf("netns X freed %v after deletion despite its orphans; the drain test proves nothing", gone)
	}
}

func TestDrainLiveSockets(t *testing.T) {
	f := newFixture(t)
	held := f.makeLive(t)
	t.Logf("before: %v", stateCounts(t, f.x))

	rep, err := reap.Drain(context.Background(), f.x.NS, reap.Options{Occupied: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %+v", rep)
	// Processes are inside (Occupied): sockets with an inode are theirs.
	if groupSum(rep.DestroyedBy, reap.OwnerProcess) == 0 || groupSum(rep.FoundBy, reap.OwnerKernel) != 0 {
		t.Errorf("by owner with processes inside: found %+v, destroyed %+v", rep.FoundBy, rep.DestroyedBy)
	}
	// Connections are gone; what a live descriptor keeps bound stays bound
	// (closed listeners, bound UDP) and is reported as left.
	left := stateCounts(t, f.x)
	for k, n := range left {
		if k != "tcp/UNCONN" && k != "udp/UNCONN" {
			t.Errorf("left after drain: %d in %s (all: %v)", n, k, left)
		}
	}
	// They hold no connection: bound, not remaining.
	if rep.Remaining != 0 || rep.Bound != left["tcp/UNCONN"]+left["udp/UNCONN"] || rep.Bound == 0 {
		t.Errorf("report says %d remaining, %d bound; dump shows %v", rep.Remaining, rep.Bound, left)
	}
	// The process sees its sockets aborted.
	for _, s := range held {
		if e, err := unix.GetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 && unix.Errno(e) != unix.ECONNABORTED {
			t.Errorf("socket error %v, want ECONNABORTED", unix.Errno(e))
		}
	}
	for _, s := range held {
		s.Close()
	}
	if ss := f.x.SS(t); len(ss) != 0 {
		t.Errorf("ss lists after the holder closed its descriptors:\n%s", strings.Join(ss, "\n"))
	}
}

func TestDrainDryRunDestroysNothing(t *testing.T) {
	f := newFixture(t)
	f.makeOrphans(t)
	before := stateCounts(t, f.x)
	rep, err := reap.Drain(context.Background(), f.x.NS, reap.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	after := stateCounts(t, f.x)
	if rep.Destroyed == 0 || rep.Found == 0 {
		t.Errorf("dry run reported nothing to do: %+v", rep)
	}
	for k, n := range before {
		if k != "tcp/TIME-WAIT" && after[k] != n {
			t.Errorf("dry run changed %s: %d -> %d", k, n, after[k])
		}
	}
}

func TestDrainSparesOrphansByPolicy(t *testing.T) {
	f := newFixture(t)
	f.makeOrphans(t)
	rep, err := reap.Drain(context.Background(), f.x.NS, reap.Options{Orphans: reap.OrphansSpare})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Spared == 0 || rep.Remaining == 0 {
		t.Fatalf("spare policy destroyed the orphans: %+v", rep)
	}
	orphans := 0
	for _, g := range rep.Left {
		switch g.Owner {
		case reap.OwnerOrphan:
			orphans += g.Count
		case reap.OwnerMini:
		default:
			t.Errorf("left a socket that is neither orphan nor mini: %+v", g)
		}
	}
	if orphans != rep.Spared {
		t.Errorf("left %d orphans, spared %d", orphans, rep.Spared)
	}
	// The fallback shortens their life through the namespace's sysctls
	// (how fast they then die is the kernel matrix's business).
	for _, key := range []string{"net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_fin_timeout"} {
		if got := f.x.Exec(t, "sysctl", "-n", key); strings.TrimSpace(got) != "1" {
			t.Errorf("%s in X = %q, want 1", key, got)
		}
	}
}

func TestDrainLeavesHostAlone(t *testing.T) {
	nettest.RequireRoot(t)
	// A loopback connection in the host namespace must survive a drain of
	// another namespace.
	lst, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lst)
	if err := unix.Bind(lst, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lst, 4); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(lst)
	cl, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cl)
	if err := unix.Connect(cl, sa); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.makeOrphans(t)
	if _, err := reap.Drain(context.Background(), f.x.NS, reap.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(cl, []byte("still here")); err != nil {
		t.Fatalf("host connection broken by a drain of another namespace: %v", err)
	}
	if e, _ := unix.GetsockoptInt(cl, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
		t.Fatalf("host socket error %v", unix.Errno(e))
	}
}

func TestDrainEmptyNetnsSkipsDumps(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	rep, err := reap.Drain(context.Background(), x.NS, reap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passes != 0 || rep.Found != 0 || rep.Remaining != 0 {
		t.Errorf("empty namespace: %+v, want no pass at all", rep)
	}
	// One bound UDP socket is enough to make it non-empty.
	x.BindUDP(t, netip.MustParseAddrPort("127.0.0.1:9500"), netip.AddrPort{})
	rep, err = reap.Drain(context.Background(), x.NS, reap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passes == 0 || rep.Found != 1 {
		t.Errorf("namespace with a UDP socket: %+v, want it found", rep)
	}
}

// TestDrainManySockets drains a namespace above the split threshold, where
// TCP tables are dumped in parts by parallel dumpers: nothing may slip
// through the parts.
func TestDrainManySockets(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	x.Sysctl(t, "net.ipv4.ip_local_port_range", "1024 65000")
	const conns = 4200 // 8400 sockets: above the split threshold, below the fd limit
	var held []*nettest.Socket
	for _, ap := range []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9600"), netip.MustParseAddrPort("[::1]:9600")} {
		lst := x.Listen(t, ap, 4096, 0)
		for range conns / 2 {
			held = append(held, x.Dial(t, ap), nettest.Accept(t, lst))
		}
	}
	before := stateCounts(t, x)
	if before["tcp/ESTAB"] != 2*conns {
		t.Fatalf("setup: %v", before)
	}
	rep, err := reap.Drain(context.Background(), x.NS, reap.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("found %d destroyed %d gone %d remaining %d bound %d passes %d in %d us",
		rep.Found, rep.Destroyed, rep.AlreadyGone, rep.Remaining, rep.Bound, rep.Passes, rep.DurationUS)
	left := stateCounts(t, x)
	if left["tcp/ESTAB"] != 0 || left["tcp/LISTEN"] != 0 || rep.Remaining != 0 {
		t.Errorf("left after drain: %v (report remaining %d)", left, rep.Remaining)
	}
	if rep.Destroyed < conns {
		t.Errorf("destroyed %d, want at least one end of each of %d connections", rep.Destroyed, conns)
	}
	for _, s := range held {
		s.Close()
	}
}

// Drain leaves GOMAXPROCS alone: it is the process's, and concurrent
// drains in one process would race on it.
func TestDrainKeepsGOMAXPROCS(t *testing.T) {
	f := newFixture(t)
	f.makeOrphans(t)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	changed := make(chan int, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := runtime.GOMAXPROCS(0); n != 1 {
				select {
				case changed <- n:
				default:
				}
			}
			runtime.Gosched()
		}
	}()
	rep, err := reap.Drain(context.Background(), f.x.NS, reap.Options{Workers: 4})
	close(stop)
	<-done
	if err != nil || rep.Found == 0 {
		t.Fatalf("drain: %+v, %v", rep, err)
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS %d after the drain, want 1", n)
	}
	select {
	case n := <-changed:
		t.Errorf("GOMAXPROCS was %d during the drain, want 1 throughout", n)
	default:
	}
}

// groupSum adds the counts of gs whose owner is owner ("" for all).
func groupSum(gs []reap.Group, owner string) int {
	n := 0
	for _, g := range gs {
		if owner == "" || g.Owner == owner {
			n += g.Count
		}
	}
	return n
}
