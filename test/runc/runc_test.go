package runc_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
	"github.com/sockreap/sockreap/internal/pin"
)

const peerPort = 7000

// orphanSetup starts a container (hooks installed or not) whose process
// fills a connection to a non-reading peer, then kills it: the connection
// becomes an orphan holding the container's namespace. It returns the
// container and the peer end of its veth.
func orphanSetup(t *testing.T, rt *runtime, h *hooks) (*container, *nettest.Netns, string, *nettest.Socket) {
	t.Helper()
	peer := nettest.NewNetns(t)
	b := newBundle(t, bundleSpec{args: senderArgs("192.0.2.2", peerPort)})
	if h != nil {
		h.install(t, b)
	}
	c := rt.create(t, b)
	witness := c.wire(t, peer, "192.0.2.1", "192.0.2.2")
	ln := peer.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("192.0.2.2:%d", peerPort)), 8, 4096)
	c.start(t)
	c.waitStuckSender(t)
	c.stop(t)
	return c, peer, witness, ln
}

func testOrphanFreedAtDelete(t *testing.T, runtimeName string) {
	rt := requireRuntime(t, runtimeName)
	h := newHooks(t)
	c, peer, witness, _ := orphanSetup(t, rt, h)
	if len(h.pins(t)) != 1 {
		t.Fatalf("want one pin after create, have %d", len(h.pins(t)))
	}
	c.delete(t)
	if nettest.WaitUntil(nettest.FreeWait, func() bool { return nettest.LinkGone(peer, witness) }) < 0 {
		t.Fatalf("the container's namespace still exists %v after '%s delete' (veth end %s still in %s); hook log:\n%v",
			nettest.FreeWait, rt.name, witness, peer.Name, h.find(t, c.id, "poststop"))
	}
	l := h.onePoststop(t, c.id)
	r := reportOf(l)
	if r == nil || num(r, "found") < 1 || num(r, "remaining") != 0 || l["error"] != nil {
		t.Errorf("poststop log line %v: want a drain that found the orphan and left nothing", l)
	}
	if ps := h.pins(t); len(ps) != 0 {
		t.Errorf("pins left after delete: %v", ps)
	}
}

func TestRuncOrphanFreedAtDelete(t *testing.T) { testOrphanFreedAtDelete(t, "runc") }
func TestCrunOrphanFreedAtDelete(t *testing.T) { testOrphanFreedAtDelete(t, "crun") }

func TestRuncOrphanLingersWithoutHooks(t *testing.T) {
	rt := requireRuntime(t, "runc")
	c, peer, witness, ln := orphanSetup(t, rt, nil)
	c.delete(t)
	// The witness of the test above, expected to fail here: the orphan
	// keeps the namespace.
	if d := nettest.WaitUntil(1500*time.Millisecond, func() bool { return nettest.LinkGone(peer, witness) }); d >= 0 {
		t.Fatalf("without hooks the namespace was freed after %s: the orphan did not hold it, so the test with hooks proves nothing", d)
	}
	// Clean up: the peer resets the connection, the orphan dies, the
	// namespace goes.
	nettest.Accept(t, ln).Reset()
	if nettest.WaitUntil(10*time.Second, func() bool { return nettest.LinkGone(peer, witness) }) < 0 {
		t.Logf("the lingering namespace did not go after the peer's RST; it goes when the orphan times out")
	}
}

func TestRuncSharedNetns(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	peer := nettest.NewNetns(t)

	// a owns the namespace; b joins it and leaves an orphan behind.
	ba := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "sleep", "600"}})
	h.install(t, ba)
	a := rt.create(t, ba)
	witness := a.wire(t, peer, "192.0.2.1", "192.0.2.2")
	peer.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("192.0.2.2:%d", peerPort)), 8, 4096)
	a.start(t)
	bb := newBundle(t, bundleSpec{args: senderArgs("192.0.2.2", peerPort), netnsPath: a.netnsPath()})
	h.install(t, bb)
	b := rt.create(t, bb)
	if b.netnsID(t) != a.netnsID(t) {
		t.Fatal("the second container did not join the first one's namespace")
	}
	b.start(t)
	b.waitStuckSender(t)
	b.stop(t)
	b.delete(t)

	ls := h.find(t, b.id, "poststop")
	if len(ls) != 1 || reportOf(ls[0]) != nil || !strings.Contains(fmt.Sprint(ls[0]["msg"]), "live processes") {
		t.Fatalf("stopping the first container of a shared namespace: log %v, want skipped (live processes) and no drain", ls)
	}
	if ss := a.inNetns(t, "ss", "-tanH"); !strings.Contains(ss, "192.0.2.2:7000") {
		t.Fatalf("the orphan left by the first container was touched while the namespace was shared:\n%s", ss)
	}

	a.stop(t)
	a.delete(t)
	if nettest.WaitUntil(nettest.FreeWait, func() bool { return nettest.LinkGone(peer, witness) }) < 0 {
		t.Fatalf("the shared namespace still exists %v after the last container's delete; log %v", nettest.FreeWait, h.find(t, a.id, "poststop"))
	}
	ls = h.find(t, a.id, "poststop")
	if len(ls) != 1 || reportOf(ls[0]) == nil || num(reportOf(ls[0]), "found") < 1 {
		t.Errorf("stopping the last container: log %v, want a drain that found the orphan", ls)
	}
	if ps := h.pins(t); len(ps) != 0 {
		t.Errorf("pins left: %v", ps)
	}
}

// TestRuncBadInput breaks the hooks' input in every way the issue lists;
// each time the container still starts and deletes, the log says what
// happened, and the host's sockets are untouched.
func TestRuncBadInput(t *testing.T) {
	rt := requireRuntime(t, "runc")
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostConn, err := net.Dial("tcp", host.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hostConn.Close()
	hostPeer, err := host.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hostPeer.Close()

	cases := []struct {
		name string
		// prepare changes the bundle (before create) or the world (after
		// create, before delete).
		before  func(t *testing.T, h *hooks, b *bundle)
		after   func(t *testing.T, h *hooks, c *container)
		stage   string // the log line to look at
		wantErr string
	}{
		{name: "malformed state", stage: "poststop", wantErr: "malformed OCI state",
			before: func(t *testing.T, h *hooks, b *bundle) { addShellHook(t, h, b, "echo '{not json' | %s") }},
		{name: "empty state", stage: "poststop", wantErr: "empty OCI state",
			before: func(t *testing.T, h *hooks, b *bundle) { addShellHook(t, h, b, "%s </dev/null") }},
		{name: "unknown stage", stage: "bogusStage", wantErr: "unknown stage",
			before: func(t *testing.T, h *hooks, b *bundle) {
				for _, stage := range []string{"createRuntime", "poststop"} {
					addHook(t, b, stage, hookBin(), "sockreap-hook", "bogusStage", "--state-dir="+h.stateDir, "--log="+h.logFile, "--config="+h.config)
				}
			}},
		{name: "pin gone and config.json missing", stage: "poststop", wantErr: "no pin",
			after: func(t *testing.T, h *hooks, c *container) {
				if _, err := (pin.Store{Dir: h.stateDir}).Release(h.pinOf(t, c.id).ID); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(c.b.dir, "config.json"), filepath.Join(c.b.dir, "config.json.moved")); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "pin points at the host namespace", stage: "poststop", wantErr: "refusing",
			after: func(t *testing.T, h *hooks, c *container) {
				s := pin.Store{Dir: h.stateDir}
				key := h.pinOf(t, c.id).ID
				if _, err := s.Release(key); err != nil {
					t.Fatal(err)
				}
				// The test runs in the host namespace; the hook does too.
				if _, err := s.Pin("/proc/self/ns/net", pin.Meta{ID: c.id, Key: key}); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			h := newHooks(t)
			b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "sleep", "600"}})
			h.install(t, b)
			if tc.before != nil {
				tc.before(t, h, b)
			}
			c := rt.create(t, b) // fails the test if a hook broke create
			c.start(t)
			c.stop(t)
			if tc.after != nil {
				tc.after(t, h, c)
			}
			if out, err := rt.cmd("delete", c.id).CombinedOutput(); err != nil {
				t.Fatalf("%s delete failed: the hooks must fail open: %v\n%s", rt.name, err, out)
			}
			var found bool
			for _, l := range h.logLines(t) {
				if l["stage"] == tc.stage && strings.Contains(fmt.Sprint(l["error"]), tc.wantErr) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s log line with an error containing %q; log:\n%v", tc.stage, tc.wantErr, h.logLines(t))
			}
		})
	}

	// The host's connection is alive and well.
	if _, err := hostConn.Write([]byte("ping")); err != nil {
		t.Fatalf("host connection broken: %v", err)
	}
	buf := make([]byte, 4)
	_ = hostPeer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hostPeer.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("host connection broken: %v %q", err, buf)
	}
}

// addShellHook adds a poststop hook that runs sockreap-hook poststop
// through /bin/sh, its stdin mangled by shell (%s in it stands for the
// sockreap-hook command line).
func addShellHook(t *testing.T, h *hooks, b *bundle, shell string) {
	t.Helper()
	cmdline := fmt.Sprintf("%s poststop --state-dir=%s --log=%s --config=%s", hookBin(), h.stateDir, h.logFile, h.config)
	addHook(t, b, "poststop", "/bin/sh", "sh", "-c", fmt.Sprintf(shell, cmdline))
}

// addHook appends a hook to stage in b's config.json.
func addHook(t *testing.T, b *bundle, stage, path string, args ...string) {
	t.Helper()
	ocitest.Edit(t, b.dir, func(doc map[string]any) {
		hooks, _ := doc["hooks"].(map[string]any)
		if hooks == nil {
			hooks = map[string]any{}
			doc["hooks"] = hooks
		}
		list, _ := hooks[stage].([]any)
		hooks[stage] = append(list, map[string]any{"path": path, "args": args})
	})
}

// TestRunc50Parallel runs 50 containers, each holding an orphan, and
// deletes them all at once: every namespace is drained and freed, no pin is
// left behind.
func TestRunc50Parallel(t *testing.T) {
	rt := requireRuntime(t, "runc")
	if testing.Short() {
		t.Skip("50 containers: skipped with -short")
	}
	const n = 50
	h := newHooks(t)
	// What is tested is that 50 hooks at once each drain their own
	// namespace and leave nothing behind, not how fast: a generous budget
	// (inside a generous OCI timeout) keeps a loaded machine from turning
	// a slow hook into an abandoned one. The hooks' speed is benchmarked.
	h.configure(t, "25s")
	peer := nettest.NewNetns(t)
	// One listener for all: 0.0.0.0 in the peer namespace the test made.
	ln := peer.Listen(t, netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", peerPort)), 128, 4096)
	_ = ln
	cs := make([]*container, n)
	witnesses := make([]string, n)
	for i := range n {
		ctr, pr := fmt.Sprintf("192.0.2.%d", 4*i+1), fmt.Sprintf("192.0.2.%d", 4*i+2)
		b := newBundle(t, bundleSpec{args: senderArgs(pr, peerPort)})
		h.install(t, b, "--timeout", "30")
		cs[i] = rt.create(t, b)
		witnesses[i] = cs[i].wire(t, peer, ctr, pr)
		cs[i].start(t)
	}
	for _, c := range cs {
		c.waitStuckSender(t)
	}
	for _, c := range cs {
		c.stop(t)
	}
	if ps := h.pins(t); len(ps) != n {
		t.Fatalf("%d pins before delete, want %d", len(ps), n)
	}

	var wg sync.WaitGroup
	errs := make(chan string, n)
	for _, c := range cs {
		wg.Add(1)
		go func(c *container) {
			defer wg.Done()
			if out, err := rt.cmd("delete", c.id).CombinedOutput(); err != nil {
				errs <- fmt.Sprintf("delete %s: %v: %s", c.id, err, out)
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	if ps := h.pins(t); len(ps) != 0 {
		t.Errorf("%d pins left behind after deleting %d containers", len(ps), n)
	}
	ents, _ := os.ReadDir(filepath.Join(h.stateDir, "meta"))
	if len(ents) != 0 {
		t.Errorf("%d metadata/lock files left in %s/meta", len(ents), h.stateDir)
	}
	left := 0
	nettest.WaitUntil(30*time.Second, func() bool {
		left = 0
		for _, w := range witnesses {
			if !nettest.LinkGone(peer, w) {
				left++
			}
		}
		return left == 0
	})
	if left > 0 {
		t.Errorf("%d of %d container namespaces still exist 30 s after the deletes", left, n)
	}
	drained := 0
	for _, c := range cs {
		ls := h.find(t, c.id, "poststop")
		if len(ls) == 1 && reportOf(ls[0]) != nil && num(reportOf(ls[0]), "found") >= 1 && ls[0]["error"] == nil {
			drained++
		} else {
			t.Logf("container %s: poststop log %v", c.id, ls)
		}
	}
	if drained != n {
		t.Errorf("%d of %d containers drained", drained, n)
	}
}

// TestRuncDrainsNetnsNamedInConfig covers poststop without a pin: the
// container joins a namespace mounted by its engine (as CNI does for a
// Kubernetes pod, /var/run/netns/cni-...). The createRuntime hook that
// configure runc installed for every container returns at once (no pin:
// the path is how poststop reaches the namespace), and poststop must find
// the namespace through config.json's nsfs mount, drain it, and so let it
// go when its name is removed.
func TestRuncDrainsNetnsNamedInConfig(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	x, peer := nettest.NewNetns(t), nettest.NewNetns(t)
	link := nettest.Connect(t, x, peer)
	b := newBundle(t, bundleSpec{args: senderArgs(link.B4.String(), peerPort), netnsPath: x.Path})
	h.install(t, b)
	peer.Listen(t, netip.AddrPortFrom(link.B4, peerPort), 8, 4096)
	c := rt.create(t, b)
	if ls := h.find(t, c.id, "createRuntime"); len(ls) != 1 || ls[0]["action"] != "nothing-to-do" || !strings.Contains(fmt.Sprint(ls[0]["msg"]), "no pin needed") {
		t.Errorf("createRuntime log %v: want one nothing-to-do line saying no pin is needed", ls)
	}
	if ps := h.pins(t); len(ps) != 0 {
		t.Errorf("pinned although config.json names the namespace: %v", ps)
	}
	c.start(t)
	c.waitStuckSender(t)
	c.stop(t)
	c.delete(t)

	l := h.onePoststop(t, c.id)
	r := reportOf(l)
	if r == nil || num(r, "found") < 1 || num(r, "remaining") != 0 {
		t.Fatalf("poststop without a pin: log %v, want a drain of %s that found the orphan and left nothing", l, x.Path)
	}
	if ss := x.SS(t); len(ss) != 0 {
		t.Errorf("ss in %s after poststop:\n%s", x.Name, strings.Join(ss, "\n"))
	}
	if nettest.DeleteAndWatch(t, x, peer, link.NameB, nettest.FreeWait) < 0 {
		t.Errorf("the drained namespace still exists %v after its name was removed", nettest.FreeWait)
	}
}

// dropHook removes every hook of stage from the bundle's config.json.
func dropHook(t *testing.T, b *bundle, stage string) {
	t.Helper()
	ocitest.Edit(t, b.dir, func(doc map[string]any) {
		if hooks, ok := doc["hooks"].(map[string]any); ok {
			delete(hooks, stage)
		}
	})
}

// TestRuncCreateFailsBeforeCreateRuntime: runc runs poststop also when
// create fails before the createRuntime hook ran. There was never a
// namespace to pin; the poststop line says so, without a warning about the
// hook's installation.
func TestRuncCreateFailsBeforeCreateRuntime(t *testing.T) {
	rt := requireRuntime(t, "runc")
	h := newHooks(t)
	b := newBundle(t, bundleSpec{args: []string{"/bin/busybox", "true"}})
	h.install(t, b)
	ocitest.Edit(t, b.dir, func(doc map[string]any) {
		// A bind mount of a source that does not exist fails in rootfs
		// setup, before createRuntime.
		mounts, _ := doc["mounts"].([]any)
		doc["mounts"] = append(mounts, map[string]any{"destination": "/srv", "type": "bind", "source": "/nonexistent/sockreap-test", "options": []string{"rbind"}})
	})
	id := nettest.Unique("srct")
	t.Cleanup(func() { _ = rt.cmd("delete", "--force", id).Run() })
	if out, err := rt.cmd("create", "--bundle", b.dir, id).CombinedOutput(); err == nil {
		t.Fatalf("%s create succeeded with a missing bind source:\n%s", rt.name, out)
	}
	if l := h.find(t, id, "createRuntime"); len(l) != 0 {
		t.Fatalf("createRuntime ran: %v", l)
	}
	ls := h.find(t, id, "poststop")
	if len(ls) != 1 {
		t.Skipf("%s ran no poststop hook after a failed create (log: %v)", rt.name, h.logLines(t))
	}
	l := ls[0]
	if l["level"] != "INFO" || l["warnings"] != nil || !strings.Contains(fmt.Sprint(l["msg"]), "createRuntime never pinned") {
		t.Errorf("poststop after a failed create: %v; want INFO saying createRuntime never pinned, no warning", l)
	}
}
