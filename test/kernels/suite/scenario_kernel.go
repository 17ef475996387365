package suite

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// testKernelRDS: rds_tcp is a real in-kernel user of TCP. It listens on
// 16385 in every namespace and opens kernel TCP connections for RDS
// traffic. ls must show those sockets as kernel-owned and drain must
// destroy them; the namespace is then freed at once.
func testKernelRDS(t *T, e *env) {
	requireRDS(t)
	x, p, l := pair(t)
	w := nettest.NewNetns(t) // witness: its veth peer shows when x is freed
	wl := nettest.Connect(t, x, w)
	kern, all := rdsKernelSockets(t, e, x)
	if !hasPort(kern, rdsTCPPort) {
		t.Fatalf("ls does not show rds_tcp's listener on %d as kernel-owned: %v", rdsTCPPort, raws(all))
	}
	src := rdsConnect(t, x, p, l)
	src.Close()
	kern, all = rdsKernelSockets(t, e, x)
	t.Logf("ls in x: %v", raws(all))
	if len(kern) < 2 {
		t.Errorf("want rds_tcp's listener and connection as kernel sockets, ls shows %d kernel-owned: %v", len(kern), raws(all))
	}
	// The peer goes away as a container's peer would; x's kernel sockets
	// stay established to nobody, and rds_tcp's reconnects find no route.
	unplug(t, x, l)
	waitQuiet()
	r, _ := drain(t, e, x)
	if r.Destroyed < 2 {
		t.Errorf("drain destroyed %d sockets, want rds_tcp's listener and connection (2+)", r.Destroyed)
	}
	closed := checkClosedOnly(t, x, r)
	t.Notef("%d kernel sockets destroyed%s", r.Destroyed, closed)
	freeWithin(t, x, wl, nettest.FreeWait)
}

// unplug deletes the veth of link l (both ends): the peer vanishes from
// x's view without a word, as a remote host that went away would.
func unplug(t *T, x *nettest.Netns, l *nettest.Link) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", x.Name, "link", "del", l.NameA).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link del %s: %v %s", x.Name, l.NameA, err, out)
	}
}

// checkClosedOnly asserts that drain left nothing but closed, bound-only
// sockets (a kernel user that bound its socket keeps it hashed after
// tcp_abort until it releases it at namespace exit; dumps list bound-only
// TCP since 6.3) and that a fresh dump and ss agree. It returns a note.
func checkClosedOnly(t *T, x *nettest.Netns, r *reap.Report) string {
	t.Helper()
	n := 0
	for _, g := range r.Left {
		if g.State != "UNCONN" && g.State != "CLOSE" {
			t.Errorf("drain left %d %s %s sockets of owner %s", g.Count, g.Protocol, g.State, g.Owner)
		}
		n += g.Count
	}
	checkEmpty(t, x, func(s *sockdiag.Socket) bool { return s.State == sockdiag.Close })
	if n > 0 {
		return fmt.Sprintf("; %d closed bound-only kernel socket(s) stay listed until rds_tcp releases them at netns exit", n)
	}
	return ""
}

func hasPort(l []lsEntry, port int) bool {
	suffix := fmt.Sprintf(":%d", port)
	for _, s := range l {
		if strings.HasSuffix(s.Local, suffix) {
			return true
		}
	}
	return false
}

func raws(l []lsEntry) []string {
	var out []string
	for _, s := range l {
		out = append(out, fmt.Sprintf("%s %s %s %s", s.Protocol, s.State, s.Local, s.ownerKind()))
	}
	return out
}

func delNetns(t *T, n *nettest.Netns) {
	t.Helper()
	if n.NS != nil {
		n.NS.Close()
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v %s", n.Name, err, out)
	}
}

// hangWatch is how long the reproduction watches for the hang: the kernel
// prints "waiting for <dev> to become free" after 10 s of waiting.
const hangWatch = 25 * time.Second

var hangMessages = []string{"to become free", "unregister_netdevice", "refcount", "BUG", "WARNING", "use-after-free"}

// testHang reproduces the original bug: a namespace dies while an
// in-kernel user's TCP socket still has unacknowledged data to a peer that
// vanished. First with sockreap draining before the namespace is released
// (must be freed at once, no hang message), then without (reported: the
// kernel log and when, if ever, the namespace went). The run without
// sockreap goes last because a stuck cleanup_net blocks every later
// namespace cleanup on the kernel.
func testHang(t *T, e *env) {
	requireRDS(t)
	if !e.cfg.InVM {
		t.Skipf("runs only in a throwaway VM: without sockreap it may wedge namespace cleanup for the whole kernel")
	}
	with := hangRound(t, e, true)
	if with.freed < 0 || with.freed > time.Second {
		t.Errorf("with sockreap drain: namespace not freed within 1s (%v)", with)
	}
	if len(with.msgs) > 0 {
		t.Errorf("with sockreap drain: kernel logged %v", with.msgs)
	}
	without := hangRound(t, e, false)
	switch {
	case len(without.msgs) > 0 && containsAny(without.msgs, "to become free"):
		t.Notef("HANG reproduced without sockreap (%s); with drain freed in %s, no message", without, with.freed.Round(time.Millisecond))
	case without.freed < 0:
		t.Notef("no hang message, but without sockreap the namespace was not freed within %s (%s); with drain freed in %s", hangWatch, without, with.freed.Round(time.Millisecond))
	default:
		t.Notef("no hang: without sockreap freed in %s (%s); with drain in %s", without.freed.Round(time.Millisecond), without, with.freed.Round(time.Millisecond))
	}
}

type hangOutcome struct {
	freed time.Duration // -1: not within the watch
	msgs  []string
	// wedged: cleanup_net itself is stuck (later namespaces are not freed
	// either) rather than the namespace being pinned by a reference.
	wedged bool
}

func (h hangOutcome) String() string {
	f := "not freed (pinned: later namespaces are still freed)"
	if h.wedged {
		f = "not freed (netns cleanup wedged for the whole kernel)"
	}
	if h.freed >= 0 {
		f = "freed after " + h.freed.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s; kernel log: %q", f, h.msgs)
}

func containsAny(l []string, s string) bool {
	for _, x := range l {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func hangRound(t *T, e *env, useSockreap bool) hangOutcome {
	t.Helper()
	x, p, l := pair(t)
	w := nettest.NewNetns(t)
	wl := nettest.Connect(t, x, w)
	src := rdsConnect(t, x, p, l)
	// The peer vanishes without a word (its veth end goes with it), then
	// x sends more: rds_tcp queues it on its kernel socket, which now
	// retransmits to nobody.
	unplug(t, x, l)
	for i := 0; i < 4; i++ {
		if err := unix.Sendto(src.FD, []byte("into the void"), unix.MSG_DONTWAIT, nettest.Sockaddr(netip.AddrPortFrom(l.B4, 4001))); err != nil {
			t.Logf("rds send after the peer went: %v", err)
		}
	}
	waitQuiet()
	src.Close()
	_, all := rdsKernelSockets(t, e, x)
	t.Logf("sockreap=%v: x before release: %v", useSockreap, raws(all))
	if useSockreap {
		r, _ := drain(t, e, x)
		checkClosedOnly(t, x, r)
	}
	mark := kmsgMark()
	watch := time.Second
	if !useSockreap {
		watch = hangWatch
	}
	if x.NS != nil {
		x.NS.Close()
	}
	if out, err := exec.Command("ip", "netns", "del", x.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v %s", x.Name, err, out)
	}
	out := hangOutcome{freed: nettest.WaitUntil(watch, func() bool { return nettest.LinkGone(w, wl.NameB) })}
	if !useSockreap && out.freed >= 0 {
		// Freed: still give a late message a moment to show.
		time.Sleep(time.Second)
	}
	out.msgs = kmsgSince(mark, hangMessages...)
	t.Logf("sockreap=%v: %s", useSockreap, out)
	if out.freed < 0 {
		for _, s := range kernelStacks("cleanup_net", "netdev_run_todo", "rds_") {
			t.Logf("kernel stack: %s", s)
		}
		out.wedged = cleanupWedged(t)
		t.Logf("netns cleanup wedged for the whole kernel: %v", out.wedged)
	}
	return out
}
