package netns_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
)

func TestIdentityAndRefusals(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	id, err := netns.IDOf(x.Path)
	if err != nil || id != x.NS.ID || id.Zero() {
		t.Fatalf("IDOf(%s) = %v, %v; handle says %v", x.Path, id, err, x.NS.ID)
	}
	if _, err := netns.CheckTarget(x.NS.ID); err != nil {
		t.Errorf("a test namespace was refused: %v", err)
	}
	self, err := netns.Self()
	if err != nil {
		t.Fatal(err)
	}
	// Our own namespace is refused; when it is the host's too, it is
	// named the host's.
	want := netns.ErrSelf
	if host, _ := netns.IsHost(self); host {
		want = netns.ErrHost
	}
	if _, err := netns.CheckTarget(self); !errors.Is(err, want) {
		t.Errorf("own namespace: %v, want %v", err, want)
	}
	if netns.IsNsfs("/etc/hostname") {
		t.Error("a regular file passed as a namespace")
	}
	if _, err := netns.Open("/etc/hostname"); !errors.Is(err, netns.ErrNotNetns) {
		t.Errorf("Open(/etc/hostname): %v, want ErrNotNetns", err)
	}
	if _, err := netns.Open("/proc/self/ns/mnt"); !errors.Is(err, netns.ErrNotNetns) {
		t.Errorf("Open(mount namespace): %v, want ErrNotNetns", err)
	}
}

func TestDoReturnsToOwnNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	self, _ := netns.Self()
	var inside netns.ID
	if err := x.NS.Do(func() (err error) { inside, err = netns.Self(); return err }); err != nil {
		t.Fatal(err)
	}
	after, _ := netns.Self()
	if inside != x.NS.ID || after != self {
		t.Errorf("inside %v (want %v), after %v (want %v)", inside, x.NS.ID, after, self)
	}
}

func TestProcsFindsProcessInside(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	if procs, _, err := netns.Procs(x.NS.ID); err != nil || len(procs) != 0 {
		t.Fatalf("fresh namespace: %v, %v", procs, err)
	}
	cmd := x.Start(t, "sleep", "30")
	found := nettest.WaitUntil(20*time.Second, func() bool {
		procs, _, _ := netns.Procs(x.NS.ID)
		return len(procs) == 1 && procs[0].PID == cmd.Process.Pid && procs[0].Comm == "sleep"
	})
	if found < 0 {
		procs, _, _ := netns.Procs(x.NS.ID)
		t.Fatalf("Procs = %v, want the sleep (pid %d)", procs, cmd.Process.Pid)
	}
	if id, err := netns.IDOf("/proc/" + itoa(cmd.Process.Pid) + "/ns/net"); err != nil || id != x.NS.ID {
		t.Errorf("IDOf(/proc/pid/ns/net) = %v, %v", id, err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestMain(m *testing.M) {
	nettest.RunHelper()
	os.Exit(m.Run())
}

// setns moves one thread: a process whose worker thread entered the
// namespace is inside, though /proc/PID/ns/net names the host's.
func TestProcsSeesThreadInside(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	h := nettest.StartHelper(t, nil, nettest.ThreadListener, x.Path, "127.0.0.1:9601")
	if in, err := netns.In(x.NS.ID, h.PID, h.PID); err != nil || in {
		t.Fatalf("leader inside: %v %v", in, err)
	}
	if in, err := netns.In(x.NS.ID, h.PID, h.TID); err != nil || !in {
		t.Fatalf("thread %d not inside: %v %v", h.TID, in, err)
	}
	procs, _, err := netns.Procs(x.NS.ID)
	if err != nil || len(procs) != 1 || procs[0].PID != h.PID {
		t.Errorf("Procs = %v, %v; want the helper %d", procs, err, h.PID)
	}
	if own, err := netns.OwnFiles(h.PID, h.TID); err != nil || own {
		t.Errorf("OwnFiles of a plain thread: %v %v, want false", own, err)
	}
}

// A process outside holds a socket made inside: its descriptor table
// names the socket's inode, the one the namespace's dump shows.
func TestHeldSockets(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	h := nettest.StartHelper(t, nil, nettest.OutsideHolder, x.Path, "127.0.0.1:9602")
	held, err := netns.HeldSockets(h.PID, h.PID, func(uint64) bool { return true })
	if err != nil || len(held) == 0 {
		t.Fatalf("HeldSockets = %v, %v", held, err)
	}
	ss := x.Exec(t, "ss", "-tlnHe")
	found := false
	for _, ino := range held {
		if strings.Contains(ss, "ino:"+strconv.FormatUint(ino, 10)) {
			found = true
		}
	}
	if !found {
		t.Errorf("none of the helper's sockets %v is the listener ss shows:\n%s", held, ss)
	}
	if _, err := netns.HeldSockets(1<<22+7, 1<<22+7, func(uint64) bool { return true }); !errors.Is(err, netns.ErrGone) {
		t.Errorf("HeldSockets of no process: %v, want ErrGone", err)
	}
}
