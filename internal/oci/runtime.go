package oci

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultRoots are the state roots of runtimes run as root without --root.
var defaultRoots = map[string]string{
	"runc": "/run/runc",
	"crun": "/run/crun",
}

// RuntimeRoot returns the state root of the runtime process pid (runc and
// crun: their --root flag, else their default root as root user), "" when
// that cannot be found out. Hooks are children of the runtime, so pid is
// the hook's parent; the root is the same at createRuntime (runc create)
// and poststop (runc delete), so it tells containers of two runtimes that
// share an id apart.
func RuntimeRoot(pid int) string {
	b, err := readProc("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return ""
	}
	argv := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
	root := defaultRoots[filepath.Base(argv[0])]
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--root" || a == "-root":
			if i+1 < len(argv) {
				root = argv[i+1]
			}
		case strings.HasPrefix(a, "--root=") || strings.HasPrefix(a, "-root="):
			root = a[strings.Index(a, "=")+1:]
		}
	}
	if root == "" || !filepath.IsAbs(root) {
		return ""
	}
	return filepath.Clean(root)
}

// RuntimeStateDir returns the state directory that runtime process pid
// keeps for container id while it knows the container (runc: <root>/<id>),
// read from the runtime's command line (its --root flag, or its default
// root). It returns "" when that cannot be found out or the directory does
// not exist.
func RuntimeStateDir(pid int, id string) string {
	root := RuntimeRoot(pid)
	if root == "" || id == "" || strings.Contains(id, "/") || id == "." || id == ".." {
		return ""
	}
	dir := filepath.Join(root, id)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	return dir
}

// readProc reads a /proc file (size 0 in stat) up to 1 MiB.
func readProc(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}
