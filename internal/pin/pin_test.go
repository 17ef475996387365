package pin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"golang.org/x/sys/unix"
)

// newStore returns a store in a temporary directory whose mounts are all
// undone at cleanup.
func newStore(t *testing.T) Store {
	t.Helper()
	s := Store{Dir: t.TempDir()}
	t.Cleanup(func() {
		if pins, _ := s.List(); pins != nil {
			for _, p := range pins {
				_, _ = s.Release(p.ID)
			}
		}
		_ = unix.Unmount(s.pinsDir(), unix.MNT_DETACH)
	})
	return s
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"", ".", "..", "a/b", "a\x00b"} {
		if ValidID(id) == nil {
			t.Errorf("ValidID(%q) accepted", id)
		}
	}
	for _, id := range []string{"c1", "abc-def_1.2", "x.json"} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
}

func TestPinKeepsNamespaceAfterProcessExits(t *testing.T) {
	nettest.RequireRoot(t)
	s := newStore(t)

	// A process in a fresh namespace no one else holds.
	cmd := exec.Command("unshare", "--net", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	source := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	var want netns.ID
	deadline := time.Now().Add(20 * time.Second)
	for {
		id, err := netns.IDOf(source)
		self, _ := netns.Self()
		if err == nil && id != self {
			want = id
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process never entered its own namespace: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	p, err := s.Pin(source, Meta{ID: "c1", PID: cmd.Process.Pid, Bundle: "/b"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Mounted || p.NS != want || p.Meta == nil || p.Meta.Ino != want.Ino || p.Meta.Created.IsZero() {
		t.Fatalf("pin = %+v meta %+v, want mounted %s", p, p.Meta, want)
	}
	// Pinning again is a no-op.
	if again, err := s.Pin(source, Meta{ID: "c1"}); err != nil || again.NS != want {
		t.Fatalf("second Pin = %+v, %v", again, err)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	got, err := netns.IDOf(s.Path("c1"))
	if err != nil || got != want {
		t.Fatalf("after the process exited the pin holds %v (%v), want %s", got, err, want)
	}
	pins, err := s.List()
	if err != nil || len(pins) != 1 || pins[0].ID != "c1" || pins[0].Meta.Bundle != "/b" {
		t.Fatalf("List = %+v, %v", pins, err)
	}

	released, err := s.Release("c1")
	if err != nil || !released {
		t.Fatalf("Release = %v, %v", released, err)
	}
	if _, err := os.Lstat(s.Path("c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin file still there after release: %v", err)
	}
	if _, err := s.Get("c1"); !errors.Is(err, ErrNoPin) {
		t.Errorf("Get after release = %v, want ErrNoPin", err)
	}
	if released, err := s.Release("c1"); err != nil || released {
		t.Errorf("second Release = %v, %v; want false, nil", released, err)
	}
}

func TestPinOtherNamespaceUnderSameID(t *testing.T) {
	nettest.RequireRoot(t)
	s := newStore(t)
	a, b := nettest.NewNetns(t), nettest.NewNetns(t)
	if _, err := s.Pin(a.Path, Meta{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Pin(b.Path, Meta{ID: "c"})
	var other *ErrOtherNetns
	if !errors.As(err, &other) || other.Existing.NS != a.NS.ID {
		t.Fatalf("Pin of another namespace under the same id = %v, want ErrOtherNetns with %s", err, a.NS.ID)
	}
}

func TestPinRefusesNonNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	s := newStore(t)
	f := s.Dir + "/plain"
	_ = os.WriteFile(f, nil, 0o600)
	if _, err := s.Pin(f, Meta{ID: "c"}); err == nil {
		t.Fatal("pinned a plain file")
	}
	if _, err := s.Pin("/proc/self/ns/net", Meta{ID: "../x"}); err == nil {
		t.Fatal("accepted a path as container id")
	}
}

func TestStaleLeftoverFile(t *testing.T) {
	nettest.RequireRoot(t)
	s := newStore(t)
	a := nettest.NewNetns(t)
	if _, err := s.Pin(a.Path, Meta{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	// Someone unmounts the pin behind our back: it becomes a plain file.
	if err := unix.Unmount(s.Path("c"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	p, err := s.Get("c")
	if err != nil || p.Mounted {
		t.Fatalf("Get of an unmounted pin = %+v, %v; want not mounted", p, err)
	}
	// Pinning again reuses the file.
	if p, err := s.Pin(a.Path, Meta{ID: "c"}); err != nil || !p.Mounted {
		t.Fatalf("re-pin = %+v, %v", p, err)
	}
}

func TestLock(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	unlock, err := s.Lock("c", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock("c", false); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("second Lock = %v, want EWOULDBLOCK", err)
	}
	done := make(chan struct{})
	go func() {
		u, err := s.Lock("c", true)
		if err == nil {
			u()
		}
		close(done)
	}()
	unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waiting Lock never got the lock after unlock")
	}
	if _, err := os.Stat(s.lockPath("c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind with no pin: %v", err)
	}
}

// TestSweep: metadata and lock files without a pin go; a locked one and
// those of a live pin stay.
func TestSweep(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := os.MkdirAll(s.metaDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.pinsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone.json", "gone.lock", "lockonly.lock", "held.lock", "pinned.json"} {
		if err := os.WriteFile(filepath.Join(s.metaDir(), name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.Path("pinned"), nil, 0o400); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock("held", true)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	n, err := s.Sweep()
	if err != nil || n != 3 {
		t.Errorf("Sweep = %d, %v; want 3 files", n, err)
	}
	ents, _ := os.ReadDir(s.metaDir())
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "held.lock pinned.json" {
		t.Errorf("left %v, want held.lock pinned.json", left)
	}
}

// TestPinNSPinsTheOpenedNamespace: PinNS mounts the namespace the caller
// holds open, not whatever its path names later: the process it came from
// may be gone (and its pid reused) by the time the pin is made.
func TestPinNSPinsTheOpenedNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	s := newStore(t)
	cmd := exec.Command("unshare", "--net", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	source := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	self, _ := netns.Self()
	var ns *netns.NS
	nettest.WaitUntil(20*time.Second, func() bool {
		n, err := netns.Open(source)
		if err != nil || n.ID == self {
			if n != nil {
				n.Close()
			}
			return false
		}
		ns = n
		return true
	})
	if ns == nil {
		t.Fatal("unshare never entered a namespace of its own")
	}
	defer ns.Close()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, err := os.Stat(source); err == nil {
		t.Fatal("the process is still there")
	}
	p, err := s.PinNS(ns, Meta{ID: "gone-process"})
	if err != nil || !p.Mounted || p.NS != ns.ID {
		t.Fatalf("PinNS after the process exited: %+v, %v; want %s pinned", p, err, ns.ID)
	}
}
