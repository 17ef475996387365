// Package nettest builds real network fixtures for tests: named network
// namespaces, veth links between them addressed from the documentation
// ranges (192.0.2.0/24, 2001:db8::/32), and sockets created inside them.
// Everything a fixture creates is removed by t.Cleanup, also when the test
// fails. Test traffic never leaves the machine.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"golang.org/x/sys/unix"
)

// T is what the fixtures need of a test. *testing.T and *testing.B satisfy
// it, and so does a scenario runner outside package testing (the kernel
// matrix's guest) without pretending to be a testing.TB.
type T interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
}

// RequireRoot skips the test unless it runs as root with the ip tool.
func RequireRoot(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and veths (run: sudo make test)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip from iproute2 (apt-get install iproute2)")
	}
}

// Unique returns a short name unique to this process and call, with prefix.
func Unique(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%d%s", prefix, counter.Add(1), hex.EncodeToString(b[:]))
}

var counter atomic.Uint32

// Netns is a named network namespace (/var/run/netns/Name).
type Netns struct {
	Name string
	Path string
	NS   *netns.NS // open handle, closed at cleanup
}

// NewNetns creates a named namespace with lo up. It is deleted at cleanup.
func NewNetns(t T) *Netns {
	t.Helper()
	name := Unique("srt")
	Run(t, "ip", "netns", "add", name)
	n := &Netns{Name: name, Path: "/var/run/netns/" + name}
	t.Cleanup(func() {
		if n.NS != nil {
			n.NS.Close()
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns, err := netns.Open(n.Path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	n.NS = ns
	return n
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *Netns) Exec(t T, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Start starts a command inside the namespace and returns it once its
// process is in there (ip netns exec has switched; the command itself may
// still be starting). It is killed and reaped at cleanup.
func (n *Netns) Start(t T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", args, n.Name, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	if WaitUntil(20*time.Second, func() bool {
		id, err := netns.IDOf(path)
		return err == nil && id == n.NS.ID
	}) < 0 {
		t.Fatalf("%v (pid %d) never entered %s", args, cmd.Process.Pid, n.Name)
	}
	return cmd
}

// Sysctl sets a sysctl inside the namespace.
func (n *Netns) Sysctl(t T, key, value string) {
	t.Helper()
	n.Exec(t, "sysctl", "-qw", key+"="+value)
}

// SS returns what ss(8) lists for TCP and UDP inside the namespace, one
// socket per line, without header.
func (n *Netns) SS(t T) []string {
	t.Helper()
	out := n.Exec(t, "ss", "-tuanH")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// Link is a veth pair between two namespaces.
type Link struct {
	A, B         *Netns
	NameA, NameB string
	A4, B4       netip.Addr // 192.0.2.x
	A6, B6       netip.Addr // 2001:db8::x
}

var subnet atomic.Uint32

// Connect links a and b with a veth pair addressed from 192.0.2.0/24 and
// 2001:db8::/64 (a different /30 and /126 for each link of this process).
func Connect(t T, a, b *Netns) *Link {
	t.Helper()
	i := subnet.Add(1) % 63
	l := &Link{A: a, B: b, NameA: Unique("sra"), NameB: Unique("srb")}
	l.A4 = netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 1)})
	l.B4 = netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 2)})
	l.A6 = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x:1", i))
	l.B6 = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x:2", i))
	Run(t, "ip", "-n", a.Name, "link", "add", l.NameA, "type", "veth", "peer", "name", l.NameB, "netns", b.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "-n", a.Name, "link", "del", l.NameA).Run() })
	for _, s := range []struct {
		ns     *Netns
		dev    string
		v4, v6 netip.Addr
	}{{a, l.NameA, l.A4, l.A6}, {b, l.NameB, l.B4, l.B6}} {
		Run(t, "ip", "-n", s.ns.Name, "addr", "add", s.v4.String()+"/30", "dev", s.dev)
		Run(t, "ip", "-n", s.ns.Name, "-6", "addr", "add", s.v6.String()+"/126", "dev", s.dev, "nodad")
		Run(t, "ip", "-n", s.ns.Name, "link", "set", s.dev, "up")
	}
	return l
}

// LinkGone reports whether the veth end name no longer exists in the host
// namespace's view of ns (used as a witness that a namespace was freed: the
// peer end of a veth disappears when its namespace is destroyed).
func LinkGone(ns *Netns, name string) bool {
	return exec.Command("ip", "-n", ns.Name, "link", "show", name).Run() != nil
}

// WaitUntil polls cond every 10 ms until it holds or d passes and returns
// how long it took, or -1 on timeout. Tests assert on the outcome, never on
// the duration.
func WaitUntil(d time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			return -1
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// UnmountUnder detaches every mount at or below dir, deepest first: the
// clean-up of a daemon a test ran with its state under dir.
func UnmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// Run runs a command and fails the test with its output on error.
func Run(t T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FreeWait is how long a test waits for a namespace nothing holds any more
// to go. The kernel frees namespaces in a workqueue, a few ms after the
// last reference on an idle machine, seconds later on a loaded one; an
// undrained orphan holds a namespace for a minute or more, so the wait
// still tells a drained namespace from a held one. Speed is measured by
// the benchmarks, never asserted in tests.
const FreeWait = 15 * time.Second

// DeleteAndWatch deletes namespace x (its name and the test's handle on it)
// and watches the veth end peerDev in p for up to wait: it returns how long
// the end took to disappear, or -1 if it is still there, which means
// something still holds x.
func DeleteAndWatch(t T, x, p *Netns, peerDev string, wait time.Duration) time.Duration {
	t.Helper()
	if x.NS != nil {
		x.NS.Close()
		x.NS = nil
	}
	Run(t, "ip", "netns", "del", x.Name)
	return WaitUntil(wait, func() bool { return LinkGone(p, peerDev) })
}
