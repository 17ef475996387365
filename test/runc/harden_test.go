package runc_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"golang.org/x/sys/unix"
)

// TestRuncSameIDTwoRoots: the same container id under two runc --roots is
// two containers, each with its own pin; deleting one drains its own
// namespace and leaves the other's pin in place.
func TestRuncSameIDTwoRoots(t *testing.T) {
	base := requireRuntime(t, "runc")
	h := newHooks(t)
	id := nettest.Unique("srroot")
	var cs []*container
	for i := 0; i < 2; i++ {
		rt := &runtime{name: base.name, path: base.path, root: t.TempDir()}
		b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "sleep", "600"}})
		h.install(t, b)
		c := rt.createID(t, b, id)
		c.start(t)
		cs = append(cs, c)
	}
	want := map[netns.ID]bool{cs[0].netnsID(t): true, cs[1].netnsID(t): true}
	ps := h.pins(t)
	if len(ps) != 2 || len(want) != 2 {
		t.Fatalf("want two pins of two namespaces, have %d pins, %d namespaces", len(ps), len(want))
	}
	for _, p := range ps {
		if p.Container() != id || !want[p.NS] {
			t.Errorf("pin %s: container %s namespace %s", p.ID, p.Container(), p.NS)
		}
	}
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		ns := c.netnsID(t)
		c.stop(t)
		c.delete(t)
		var drained bool
		for _, l := range h.find(t, id, "poststop") {
			if l["netns"] == ns.String() && l["action"] == "drained" && l["error"] == nil {
				drained = true
			}
		}
		if !drained {
			t.Errorf("delete under root %d: no drain of its namespace %s; log: %v", i, ns, h.find(t, id, "poststop"))
		}
		if left := h.pins(t); len(left) != i {
			t.Fatalf("after deleting under root %d: %d pins left, want %d", i, len(left), i)
		}
		if i == 1 && h.pins(t)[0].NS != cs[0].netnsID(t) {
			t.Errorf("the pin left is not the running container's")
		}
	}
}

// TestRuncProcPathBehindSymlinkNotDrained: config.json joins a namespace
// through a symlink to /proc/PID/task/TID/ns/net (a thread that entered
// another namespace). Such a path names a thread, not a namespace: with no
// pin, poststop does not trust it and drains nothing.
func TestRuncProcPathBehindSymlinkNotDrained(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	x := nettest.NewNetns(t)
	ln := netip.MustParseAddrPort("127.0.0.1:7171")
	x.Listen(t, ln, 8, 0)

	// A thread of this test enters x and stays there until the end.
	tids := make(chan int)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		_ = x.NS.Do(func() error {
			tids <- unix.Gettid()
			<-done
			return nil
		})
	}()
	tid := <-tids
	link := filepath.Join(t.TempDir(), "netns")
	target := "/proc/" + strconv.Itoa(os.Getpid()) + "/task/" + strconv.Itoa(tid) + "/ns/net"
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "sleep", "600"}, netnsPath: link})
	h.install(t, b)
	dropHook(t, b, "createRuntime")
	c := rt.create(t, b)
	if got := c.netnsID(t); got != x.NS.ID {
		t.Fatalf("container joined %s, want %s", got, x.NS.ID)
	}
	c.start(t)
	c.stop(t)
	c.delete(t)
	l := h.onePoststop(t, c.id)
	if l["action"] != "nothing-to-drain" || reportOf(l) != nil || !strings.Contains(strings.Join(strs(l["warnings"]), " "), "by process") {
		t.Errorf("poststop through a symlink into /proc: %v; want nothing drained and a warning", l)
	}
	if !strings.Contains(strings.Join(x.SS(t), "\n"), ln.String()) {
		t.Errorf("the listener in %s was destroyed", x.Name)
	}
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
