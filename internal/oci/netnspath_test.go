package oci

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestClassifyNetnsPath(t *testing.T) {
	dir := t.TempDir()
	tid := strconv.Itoa(unix.Gettid())
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]NetnsKind{
		"/proc/self/ns/net":                                          NetnsProc,
		"/proc/1/task/1/ns/net":                                      NetnsProc,
		link("task", "/proc/self/task/"+tid+"/ns/net"):               NetnsProc,
		link("procdir", "/proc") + "/self/ns/net":                    NetnsProc,
		link("relative", "../../../../../../../../proc/self/ns/net"): NetnsProc,
		link("chain", filepath.Join(dir, "task")):                    NetnsProc,
		filepath.Join(dir, "missing"):                                NetnsGone,
		link("dangling", filepath.Join(dir, "missing")):              NetnsGone,
		plain:                  NetnsOther,
		link("toplain", plain): NetnsOther,
		link("loop", "loop"):   NetnsGone,
		"relative/path":        NetnsGone,
	}
	if os.Geteuid() == 0 {
		// A namespace bind mount is the namespace itself; a link to
		// it is too. A procfs mounted elsewhere is still procfs.
		mnt := filepath.Join(dir, "netns")
		if err := os.WriteFile(mnt, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("/proc/self/ns/net", mnt, "none", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
		cases[mnt] = NetnsNsfs
		cases[link("tomount", mnt)] = NetnsNsfs
		proc := filepath.Join(dir, "otherproc")
		if err := os.Mkdir(proc, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })
		cases[proc+"/self/ns/net"] = NetnsProc
		cases[link("toother", proc+"/1/ns/net")] = NetnsProc
	}
	for path, want := range cases {
		got := ClassifyNetnsPath(path)
		if got.Kind != want {
			t.Errorf("%s: %s (resolved %s), want %s", path, got.Kind, got.Resolved, want)
		}
		if IsProcPath(path) != (want == NetnsProc) {
			t.Errorf("IsProcPath(%s) = %v", path, !(want == NetnsProc))
		}
	}
	if got := ClassifyNetnsPath(filepath.Join(dir, "tomount")); os.Geteuid() == 0 && got.Resolved != filepath.Join(dir, "netns") {
		t.Errorf("resolved %s, want the mount itself", got.Resolved)
	}
}
