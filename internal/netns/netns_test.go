package netns_test

import (
	"errors"
	"os/exec"
	"strconv"
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
	cmd := exec.Command("ip", "netns", "exec", x.Name, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := nettest.WaitUntil(2*time.Second, func() bool {
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
