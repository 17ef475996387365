package dyingns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot lays out the /sys and /proc files a census reads: the host
// (pid 1), a process with a thread in another namespace, an open namespace
// file and nsfs mounts, one of them of the same namespace as the file.
func fakeRoot(t *testing.T, slab map[string]string) string {
	t.Helper()
	root := t.TempDir()
	write := func(path, body string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range slab {
		write(k, v)
	}
	write("proc/1/ns/net", "")
	write("proc/1/task/1/ns/net", "")
	if err := os.Link(filepath.Join(root, "proc/1/ns/net"), filepath.Join(root, "proc/1/task/1/ns/net.tmp")); err != nil {
		t.Fatal(err)
	}
	// The host's thread shares pid 1's namespace file (same inode).
	if err := os.Rename(filepath.Join(root, "proc/1/task/1/ns/net.tmp"), filepath.Join(root, "proc/1/task/1/ns/net")); err != nil {
		t.Fatal(err)
	}
	write("proc/1/ns/mnt", "")
	write("proc/1/mountinfo", "22 1 0:4 net:[777] /run/netns/a rw - nsfs nsfs rw\n23 1 0:4 net:[555] /run/netns/b rw - nsfs nsfs rw\n24 1 8:1 / / rw - ext4 /dev/vda rw\n")
	write("proc/2/task/2/ns/net", "")
	write("proc/2/ns/mnt", "other")
	write("proc/2/mountinfo", "30 1 0:4 net:[888] /x rw - nsfs nsfs rw\n")
	if err := os.MkdirAll(filepath.Join(root, "proc/2/fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("net:[555]", filepath.Join(root, "proc/2/fd/3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("socket:[999]", filepath.Join(root, "proc/2/fd/4")); err != nil {
		t.Fatal(err)
	}
	write("proc/self", "")
	return root
}

const slabDir = "sys/kernel/slab/net_namespace/"

func TestCountBounds(t *testing.T) {
	// Reachable, the host's aside: pid 2's thread, 555 (a file and a
	// mount), 777 and 888 (mounts in two mount namespaces) = 4.
	root := fakeRoot(t, map[string]string{slabDir + "objects": "20 N0=20\n", slabDir + "cpu_slabs": "2 N0=2\n",
		slabDir + "objs_per_slab": "7\n", slabDir + "aliases": "0\n", slabDir + "shrink": ""})
	c, err := Count(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	want := Census{AliveLower: 6, Alive: 20, Reachable: 4, Lower: 2, Upper: 16, Source: filepath.Join(root, slabDir[:len(slabDir)-1])}
	if c != want {
		t.Errorf("census %+v, want %+v", c, want)
	}
	// No per-CPU slabs (as after a shrink): exact.
	os.WriteFile(filepath.Join(root, slabDir+"cpu_slabs"), []byte("0 N0=0\n"), 0o644)
	c, err = Count(Options{Root: root, Shrink: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Exact || c.Lower != 16 || c.Upper != 16 {
		t.Errorf("exact census %+v, want 16 dying, exact", c)
	}
	if b, _ := os.ReadFile(filepath.Join(root, slabDir+"shrink")); string(b) != "1" {
		t.Errorf("Shrink did not write 1 to shrink (%q)", b)
	}
}

func TestCountRefusesMergedCache(t *testing.T) {
	root := fakeRoot(t, map[string]string{slabDir + "objects": "20\n", slabDir + "cpu_slabs": "0\n", slabDir + "objs_per_slab": "7\n", slabDir + "aliases": "3\n"})
	if _, err := Count(Options{Root: root}); err == nil || !strings.Contains(err.Error(), "merged") {
		t.Errorf("merged cache: err %v, want one saying the cache is merged", err)
	}
}

func TestCountFromSlabinfo(t *testing.T) {
	root := fakeRoot(t, map[string]string{"proc/slabinfo": "slabinfo - version: 2.1\n# name <active_objs> <num_objs> ...\nnet_namespace 12 21 4224 7 8 : tunables 0 0 0 : slabdata 3 3 0\n"})
	c, err := Count(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if c.Upper != 8 || c.Lower != 0 || c.Exact {
		t.Errorf("census from slabinfo %+v, want 0 to 8, not exact", c)
	}
	os.WriteFile(filepath.Join(root, "proc/slabinfo"), []byte("slabinfo - version: 2.1\nkmalloc-4k 1 2 3\n"), 0o644)
	if _, err := Count(Options{Root: root}); err == nil || !strings.Contains(err.Error(), "no net_namespace cache") {
		t.Errorf("no cache: err %v", err)
	}
}
