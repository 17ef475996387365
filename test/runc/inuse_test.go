package runc_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"golang.org/x/sys/unix"
)

// ssIn lists the TCP sockets of the namespace open as ns (the container's
// namespace outlives the container through that descriptor).
func ssIn(t *testing.T, ns *netns.NS) string {
	t.Helper()
	fd, err := unix.Dup(ns.Fd()) // the *os.File closes its own copy
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), ns.Path)
	defer f.Close()
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "ss", "-tanH")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ss in %s: %v: %s", ns.ID, err, out)
	}
	return string(out)
}

// A process of the host whose worker thread entered the container's
// namespace (its leader stays outside) still uses it when the container
// stops: poststop leaves the namespace alone.
func TestRuncPoststopSkipsThreadInside(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "sleep", "600"}})
	h.install(t, b)
	c := rt.create(t, b)
	ns, err := netns.Open(c.netnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	helper := nettest.StartHelper(t, nil, nettest.ThreadListener, c.netnsPath(), "0.0.0.0:9501")
	c.start(t)
	c.stop(t)
	c.delete(t)

	ls := h.find(t, c.id, "poststop")
	if len(ls) != 1 || reportOf(ls[0]) != nil || !strings.Contains(fmt.Sprint(ls[0]["msg"]), "live processes") ||
		!strings.Contains(fmt.Sprint(ls[0]["msg"]), fmt.Sprint(helper.PID)) {
		t.Fatalf("poststop with a thread of process %d inside: log %v, want skipped naming it, no drain", helper.PID, ls)
	}
	if ss := ssIn(t, ns); !strings.Contains(ss, "LISTEN") || !strings.Contains(ss, ":9501") {
		t.Errorf("the thread's listener is gone after poststop:\n%s", ss)
	}
	if ps := h.pins(t); len(ps) != 0 {
		t.Errorf("pins left: %v", ps)
	}
}

// A process outside the namespace that made a socket in it (setns in,
// socket, setns back) keeps it; the container's orphan is drained.
func TestRuncPoststopKeepsSocketHeldOutside(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	peer := nettest.NewNetns(t)
	b := newBundle(t, bundleSpec{args: senderArgs("192.0.2.2", peerPort)})
	h.install(t, b)
	c := rt.create(t, b)
	c.wire(t, peer, "192.0.2.1", "192.0.2.2")
	peer.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("192.0.2.2:%d", peerPort)), 8, 4096)
	ns, err := netns.Open(c.netnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	helper := nettest.StartHelper(t, nil, nettest.OutsideHolder, c.netnsPath(), "0.0.0.0:9502")
	c.start(t)
	c.waitStuckSender(t)
	c.stop(t)
	c.delete(t)

	l := h.onePoststop(t, c.id)
	r := reportOf(l)
	if r == nil || num(r, "held") != 1 || num(r, "destroyed") < 1 {
		t.Fatalf("poststop log %v: want a drain that kept the socket held by %d and destroyed the orphan", l, helper.PID)
	}
	ss := ssIn(t, ns)
	if !strings.Contains(ss, ":9502") || strings.Contains(ss, fmt.Sprintf("192.0.2.2:%d", peerPort)) {
		t.Errorf("after poststop, want the held listener and no orphan:\n%s", ss)
	}
}
