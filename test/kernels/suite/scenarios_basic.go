package suite

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// pair makes the "container" namespace x, a peer namespace p and a veth
// between them (x holds the A end).
func pair(t *T) (x, p *nettest.Netns, l *nettest.Link) {
	x = nettest.NewNetns(t)
	p = nettest.NewNetns(t)
	return x, p, nettest.Connect(t, x, p)
}

// drainHeld drains x while the suite still holds descriptors of some of
// its sockets (as `ss -K` would): the kernel aborts them, but a socket the
// caller bound explicitly stays hashed, CLOSE and bound, until its owner
// closes it (tcp_abort/udp_abort keep SOCK_BINDPORT_LOCK sockets; dumps
// list bound-only TCP since 6.3). So: everything else must be gone, each
// held socket must have been aborted (SO_ERROR ECONNABORTED), and once the
// descriptors are closed a fresh dump and ss must find nothing at all.
// The drain is forced: without --force it leaves alone the sockets a live
// process outside the namespace holds, and here that process is the suite.
func drainHeld(t *T, e *env, x *nettest.Netns, minDestroyed int, held ...*nettest.Socket) {
	t.Helper()
	r, code := drain(t, e, x, "--force")
	if r.Destroyed+r.AlreadyGone < minDestroyed {
		t.Errorf("drain destroyed %d (+%d already gone), want at least %d", r.Destroyed, r.AlreadyGone, minDestroyed)
	}
	for _, g := range r.Left {
		if g.Owner != "process" || (g.State != "UNCONN" && g.State != "CLOSE") {
			t.Errorf("drain (exit %d) left %d %s %s sockets of owner %s", code, g.Count, g.Protocol, g.State, g.Owner)
		}
	}
	closedBound := func(s *sockdiag.Socket) bool { return s.Inode != 0 && s.State == sockdiag.Close }
	checkEmpty(t, x, closedBound)
	for _, h := range held {
		if v, err := unix.GetsockoptInt(h.FD, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || unix.Errno(v) != unix.ECONNABORTED {
			t.Errorf("held socket fd %d: SO_ERROR %v (%v), want ECONNABORTED: destroy did not reach it", h.FD, unix.Errno(v), err)
		}
	}
	closeAll(held...)
	checkEmpty(t, x, nil)
}

func closeAll(socks ...*nettest.Socket) {
	for _, s := range socks {
		s.Close()
	}
}

// testUDP: connected and bound-only UDP sockets held by a live process
// are destroyed.
func testUDP(t *T, e *env) {
	x, p, l := pair(t)
	a := x.BindUDP(t, netip.AddrPortFrom(l.A4, 5000), netip.AddrPortFrom(l.B4, 6000))
	b := x.BindUDP(t, netip.AddrPortFrom(l.A4, 5001), netip.AddrPort{})
	c := x.BindUDP(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 5002), netip.AddrPort{})
	peer := p.BindUDP(t, netip.AddrPortFrom(l.B4, 6000), netip.AddrPortFrom(l.A4, 5000))
	if _, err := unix.Write(a.FD, []byte("ping")); err != nil {
		t.Fatalf("udp send: %v", err)
	}
	// Connected without bind: the kernel picks the port, and the abort
	// unhashes it at once.
	auto := x.NewSocket(t, unix.SOCK_DGRAM, l.A4)
	if err := unix.Connect(auto.FD, nettest.Sockaddr(netip.AddrPortFrom(l.B4, 6000))); err != nil {
		t.Fatalf("udp connect: %v", err)
	}
	drainHeld(t, e, x, 4, a, b, c, auto)
	closeAll(peer)
	freeWithin(t, x, l, nettest.FreeWait)
}

// testListener: a listener with connections waiting in its accept queue
// (never accepted) and a connect still in SYN_SENT.
func testListener(t *T, e *env) {
	x, p, l := pair(t)
	ln := x.Listen(t, netip.AddrPortFrom(l.A4, 7000), 16, 0)
	var clients []*nettest.Socket
	for i := 0; i < 4; i++ {
		clients = append(clients, p.Dial(t, netip.AddrPortFrom(l.A4, 7000)))
	}
	// Connects from x to a peer listener whose accept queue is full: the
	// peer drops their SYNs, so they stay in SYN_SENT.
	pl := p.Listen(t, netip.AddrPortFrom(l.B4, 7001), 0, 0)
	filler := x.Dial(t, netip.AddrPortFrom(l.B4, 7001))
	filler2 := x.DialAsync(t, netip.AddrPortFrom(l.B4, 7001))
	syn := x.DialAsync(t, netip.AddrPortFrom(l.B4, 7001))
	before := dump(t, x)
	t.Logf("before drain: %s", describe(before))
	if n := countState(before, sockdiag.Listen); n < 1 {
		t.Errorf("no LISTEN socket in the dump before drain")
	}
	// The listener takes its queued children with it (5.10 reports no
	// separate destroy for them), so only the held sockets are counted.
	drainHeld(t, e, x, 4, ln, filler, filler2, syn)
	closeAll(pl)
	closeAll(clients...)
	freeWithin(t, x, l, nettest.FreeWait)
}

func countState(socks []sockdiag.Socket, st sockdiag.State) int {
	n := 0
	for _, s := range socks {
		if s.State == st {
			n++
		}
	}
	return n
}

// testTimeWait: x closes first, so x keeps a TIME_WAIT socket. Kernels
// from ~6.0 destroy it; older ones answer EOPNOTSUPP, which is harmless
// (TIME_WAIT holds no namespace reference and is purged at netns exit).
func testTimeWait(t *T, e *env) {
	if e.caps == nil {
		t.Fatalf("doctor gave no capabilities: cannot tell what this kernel should do with TIME_WAIT")
	}
	x, p, l := pair(t)
	ln := x.Listen(t, netip.AddrPortFrom(l.A4, 7100), 4, 0)
	cl := p.Dial(t, netip.AddrPortFrom(l.A4, 7100))
	srv := nettest.Accept(t, ln)
	srv.Close() // x sends FIN first: x ends in TIME_WAIT
	ln.Close()
	buf := make([]byte, 16)
	_ = unix.SetsockoptTimeval(cl.FD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	if n, err := unix.Read(cl.FD, buf); n != 0 || err != nil {
		t.Fatalf("peer wanted EOF, got %d bytes, %v", n, err)
	}
	cl.Close()
	if nettest.WaitUntil(2*time.Second, func() bool { return countState(dump(t, x), sockdiag.TimeWait) > 0 }) < 0 {
		t.Fatalf("no TIME_WAIT socket appeared in x: %s", describe(dump(t, x)))
	}
	r, code := drain(t, e, x)
	if e.caps.TimeWait {
		if code != 0 || r.Remaining != 0 {
			t.Errorf("doctor says TIME_WAIT is destroyable, but drain left %d (exit %d): %v", r.Remaining, code, r.Left)
		}
		checkEmpty(t, x, nil)
		t.Notef("TIME_WAIT destroyed")
	} else {
		isTW := func(s *sockdiag.Socket) bool { return s.Protocol == unix.IPPROTO_TCP && s.State == sockdiag.TimeWait }
		checkEmpty(t, x, isTW)
		if countState(dump(t, x), sockdiag.TimeWait) == 0 {
			t.Notef("doctor says TIME_WAIT is not destroyable, yet it is gone")
		} else {
			t.Notef("TIME_WAIT kept (kernel: EOPNOTSUPP, unsupported %d); purged at netns exit", r.Unsupported)
		}
	}
	freeWithin(t, x, l, nettest.FreeWait)
}

// testIPv6: the same over IPv6: a listener with a pending connection, an
// established pair and a connected UDP socket.
func testIPv6(t *T, e *env) {
	x, p, l := pair(t)
	ln := x.Listen(t, netip.AddrPortFrom(l.A6, 7200), 8, 0)
	pending := p.Dial(t, netip.AddrPortFrom(l.A6, 7200))
	pl := p.Listen(t, netip.AddrPortFrom(l.B6, 7201), 8, 0)
	cl := x.Dial(t, netip.AddrPortFrom(l.B6, 7201))
	ps := nettest.Accept(t, pl)
	u := x.BindUDP(t, netip.AddrPortFrom(l.A6, 7202), netip.AddrPortFrom(l.B6, 7203))
	lo := x.Listen(t, netip.AddrPortFrom(netip.IPv6Loopback(), 7204), 8, 0)
	before := dump(t, x)
	v6 := 0
	for _, s := range before {
		if s.Family == unix.AF_INET6 {
			v6++
		}
	}
	if v6 < 5 {
		t.Errorf("want at least 5 IPv6 sockets in x before drain, dump has %d: %s", v6, describe(before))
	}
	drainHeld(t, e, x, 5, ln, cl, u, lo)
	closeAll(pending, pl, ps)
	freeWithin(t, x, l, nettest.FreeWait)
}
