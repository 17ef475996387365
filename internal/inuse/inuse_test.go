package inuse_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/reap"
)

func TestMain(m *testing.M) {
	nettest.RunHelper()
	os.Exit(m.Run())
}

func check(t *testing.T, x *nettest.Netns, h inuse.Hint) *inuse.Verdict {
	t.Helper()
	v, err := inuse.Check(context.Background(), x.NS, h)
	if err != nil {
		t.Fatalf("Check(%s): %v", x.Name, err)
	}
	t.Logf("%s: %s", x.Name, v)
	return v
}

// sleeper runs sleep inside x, as a container's only process would.
func sleeper(t *testing.T, wrapper ...string) int {
	t.Helper()
	cmd := exec.Command(wrapper[0], append(wrapper[1:], "sleep", "60")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// waitInside waits until pid has entered the namespace (ip netns exec and
// nsenter exec the command after setns).
func waitInside(t *testing.T, x *nettest.Netns, pid int) {
	t.Helper()
	nettest.WaitUntil(20*time.Second, func() bool {
		in, _ := netns.ProcIn(x.NS.ID, pid)
		return in && netns.Comm(pid) != "ip" && netns.Comm(pid) != "nsenter"
	})
}

func TestEmptyNamespaceNeedsNoCheck(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	pid := sleeper(t, "ip", "netns", "exec", x.Name)
	waitInside(t, x, pid)
	v := check(t, x, inuse.Hint{})
	if v.Checked.Path != inuse.PathEmpty || v.InUse || v.Checked.Processes != 0 {
		t.Errorf("empty namespace: %+v, want path empty, nothing scanned", v)
	}
	// A hinted process is read even so (gc: the pin's owner still runs).
	v = check(t, x, inuse.Hint{PIDs: []int{pid}})
	if v.Checked.Path != inuse.PathEmpty || !v.InUse || v.Checked.Processes != 1 {
		t.Errorf("hinted: %+v, want in use after reading the hinted process alone", v)
	}
	// The operator's drain asks about everyone: the sleeper is seen.
	v = check(t, x, inuse.Hint{Everyone: true})
	if !v.InUse || len(v.Users) == 0 || v.Users[0].PID != pid || !strings.Contains(v.Reason(), "sleep") {
		t.Errorf("Everyone: %+v, want in use by sleep %d", v, pid)
	}
}

// orphanNetns returns a namespace X holding zero-window orphans to a peer
// in P (sockets no descriptor holds: inode 0).
func orphanNetns(t *testing.T) (x, p *nettest.Netns) {
	x, p = nettest.NewNetns(t), nettest.NewNetns(t)
	l := nettest.Connect(t, x, p)
	lst := p.Listen(t, netip.AddrPortFrom(l.B4, 9100), 8, 4096)
	c := x.Dial(t, netip.AddrPortFrom(l.B4, 9100))
	nettest.Accept(t, lst)
	nettest.Fill(t, c)
	c.Close()
	return x, p
}

func TestOrphansOnlyNeedNoScan(t *testing.T) {
	nettest.RequireRoot(t)
	x, _ := orphanNetns(t)
	v := check(t, x, inuse.Hint{})
	if v.Checked.Path != inuse.PathHolderless || v.InUse || v.Checked.Processes != 0 || v.KeepFunc() != nil {
		t.Fatalf("orphans only: %+v, want path holderless, nothing scanned, nothing kept", v)
	}
	rep, err := reap.Drain(context.Background(), x.NS, reap.Options{Orphans: reap.OrphansDestroy, Keep: v.KeepFunc()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Destroyed != 1 || len(x.SS(t)) != 0 {
		t.Errorf("drain: %+v; ss: %q", rep, x.SS(t))
	}
}

func TestThreadInsideIsInUse(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	h := nettest.StartHelper(t, nil, nettest.ThreadListener, x.Path, "127.0.0.1:9301")
	// The leader is outside: only the thread's link names the namespace.
	if in, _ := netns.In(x.NS.ID, h.PID, h.PID); in {
		t.Fatal("helper leader is inside; the test needs only a thread inside")
	}
	v := check(t, x, inuse.Hint{})
	if v.Checked.Path != inuse.PathScan || !v.InUse || len(v.Users) != 1 || v.Users[0].PID != h.PID {
		t.Errorf("thread inside: %+v, want in use by %d", v, h.PID)
	}
	// Hinted, it is found without reading the rest of the host.
	v = check(t, x, inuse.Hint{PIDs: []int{h.PID}})
	if !v.InUse || v.Checked.Hinted != 1 || v.Checked.Processes != 1 {
		t.Errorf("hinted: %+v, want in use after reading one process", v)
	}
}

func TestOutsideHolderKept(t *testing.T) {
	nettest.RequireRoot(t)
	x, _ := orphanNetns(t)
	h := nettest.StartHelper(t, nil, nettest.OutsideHolder, x.Path, "127.0.0.1:9302")
	v := check(t, x, inuse.Hint{})
	if v.InUse || v.Checked.Path != inuse.PathScan || len(v.Held) != 1 || v.Held[0].PID != h.PID {
		t.Fatalf("outside holder: %+v, want not in use and one socket held by %d", v, h.PID)
	}
	if !v.Keep(v.Held[0].Inode) || v.Keep(0) {
		t.Errorf("Keep(%d) false or Keep(0) true", v.Held[0].Inode)
	}
	rep, err := reap.Drain(context.Background(), x.NS, reap.Options{Orphans: reap.OrphansDestroy, Keep: v.KeepFunc()})
	if err != nil {
		t.Fatal(err)
	}
	ss := x.SS(t)
	if rep.Held != 1 || rep.Destroyed != 1 || len(ss) != 1 || !strings.Contains(ss[0], "127.0.0.1:9302") || !strings.Contains(ss[0], "LISTEN") {
		t.Errorf("drain %+v; ss %q: want the held listener alone left", rep, ss)
	}
	if len(rep.Left) != 1 || rep.Left[0].Owner != reap.OwnerKept {
		t.Errorf("left %+v, want the listener as %q", rep.Left, reap.OwnerKept)
	}
}

// A forced drain destroys held sockets anyway: NoHolders looks for no
// holder (no dump, no descriptor read) yet still finds a thread inside,
// for the report.
func TestNoHoldersLooksForThreadsOnly(t *testing.T) {
	nettest.RequireRoot(t)
	x, _ := orphanNetns(t)
	nettest.StartHelper(t, nil, nettest.OutsideHolder, x.Path, "127.0.0.1:9303")
	v := check(t, x, inuse.Hint{Everyone: true, NoHolders: true})
	if v.InUse || v.Checked.Path != inuse.PathThreads || v.Checked.WithInode != 0 || len(v.Held) != 0 || v.KeepFunc() != nil ||
		!strings.Contains(v.String(), "holders not looked for") {
		t.Fatalf("outside holder, NoHolders: %+v (%s); want threads only, nothing held", v, v)
	}
	h := nettest.StartHelper(t, nil, nettest.ThreadListener, x.Path, "127.0.0.1:9304")
	if v := check(t, x, inuse.Hint{Everyone: true, NoHolders: true}); !v.InUse || len(v.Users) != 1 || v.Users[0].PID != h.PID {
		t.Errorf("thread inside, NoHolders: %+v, want in use by %d", v, h.PID)
	}
}

// A pod: a pause process holds the namespace, an app container joined it
// (runc's path /proc/<pause>/ns/net, docker --network container:X).
func TestSharedNamespaceIsInUse(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	pause := sleeper(t, "ip", "netns", "exec", x.Name)
	waitInside(t, x, pause)
	joined := "/proc/" + strconv.Itoa(pause) + "/ns/net"
	app := nettest.StartHelper(t, []string{"nsenter", "--net=" + joined}, nettest.Listener, "127.0.0.1:9303")
	// A second app container stopped: its hint is the pause pid.
	v := check(t, x, inuse.Hint{PIDs: inuse.PathPIDs(joined)})
	if !v.InUse || v.Users[0].PID != pause || v.Checked.Processes != 1 {
		t.Errorf("joined through %s: %+v, want in use by the pause process after one read", joined, v)
	}
	// The pause container stopped first (no hint): the app is still there.
	app2 := app.PID
	v = check(t, x, inuse.Hint{})
	if !v.InUse || (v.Users[0].PID != pause && v.Users[0].PID != app2) {
		t.Errorf("no hint: %+v, want in use by %d or %d", v, pause, app2)
	}
}

func TestCgroupHint(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	dir := ""
	for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(root + "/cgroup.procs"); err == nil {
			dir = root
			break
		}
	}
	if dir == "" {
		t.Skip("no cgroup hierarchy to make a test cgroup in")
	}
	name := nettest.Unique("sockreap-inuse")
	cg := dir + "/" + name
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	h := nettest.StartHelper(t, nil, nettest.ThreadListener, x.Path, "127.0.0.1:9304")
	t.Cleanup(func() {
		h.Stop()
		nettest.WaitUntil(20*time.Second, func() bool { return os.Remove(cg) == nil })
	})
	if err := os.WriteFile(cg+"/cgroup.procs", []byte(strconv.Itoa(h.PID)), 0); err != nil {
		t.Skipf("cannot move a process into a cgroup: %v", err)
	}
	v := check(t, x, inuse.Hint{Cgroups: []string{"/" + name}})
	if !v.InUse || v.Checked.Hinted != 1 || v.Checked.Processes != 1 {
		t.Errorf("cgroup hint: %+v, want in use after reading the cgroup's one process", v)
	}
}

func TestBudgetMakesIncomplete(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	h := nettest.StartHelper(t, nil, nettest.OutsideHolder, x.Path, "127.0.0.1:9305")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := inuse.Check(ctx, x.NS, inuse.Hint{})
	if err != nil {
		t.Fatal(err)
	}
	if v.InUse || !v.Incomplete || !v.Keep(12345) {
		t.Errorf("scan out of budget: %+v, want incomplete, every socket with an inode kept (holder %d)", v, h.PID)
	}
}

func TestPathPIDs(t *testing.T) {
	for path, want := range map[string]int{
		"/proc/42/ns/net":           42,
		"/proc/42/task/43/ns/net":   42,
		"/proc//42/ns/net":          42,
		"/var/run/netns/cni-1":      0,
		"/proc/self/ns/net":         0,
		"/run/docker/netns/abcdef0": 0,
	} {
		got := inuse.PathPIDs(path)
		if want == 0 && got != nil || want != 0 && (len(got) != 1 || got[0] != want) {
			t.Errorf("PathPIDs(%q) = %v, want %d", path, got, want)
		}
	}
}

func TestDescribeUsersQuotes(t *testing.T) {
	got := inuse.DescribeUsers([]netns.Proc{{PID: 1, Comm: "ok"}, {PID: 2, Comm: "a\x1b[2Jb"}})
	if got != `1 ok, 2 "a\x1b[2Jb"` {
		t.Errorf("DescribeUsers = %s", got)
	}
}

// A joined container stopped and left orphans; the container it joined
// still runs. Its orphans are not destroyed behind its back: the hinted
// process is looked at (no host scan).
func TestOrphansOfSharedNamespaceKept(t *testing.T) {
	nettest.RequireRoot(t)
	x, _ := orphanNetns(t)
	owner := sleeper(t, "ip", "netns", "exec", x.Name)
	waitInside(t, x, owner)
	joined := "/proc/" + strconv.Itoa(owner) + "/ns/net"
	v := check(t, x, inuse.Hint{PIDs: inuse.PathPIDs(joined)})
	if v.Checked.Path != inuse.PathHolderless || !v.InUse || v.Checked.Processes != 1 {
		t.Errorf("orphans in a shared namespace: %+v, want in use after reading the hinted process alone", v)
	}
	// Without a hint, orphans alone are no reason to read the host.
	if v := check(t, x, inuse.Hint{}); v.InUse || v.Checked.Processes != 0 {
		t.Errorf("no hint: %+v, want not in use, nothing read", v)
	}
}
