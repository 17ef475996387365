package suite

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
)

// cleanupWedged tells a pinned namespace (something still holds a
// reference, cleanup never started) from a wedged one (cleanup_net runs
// but cannot finish, which blocks every later namespace cleanup): a fresh
// namespace is created and deleted and must be freed promptly.
func cleanupWedged(t *T) bool {
	q := nettest.NewNetns(t)
	w := nettest.NewNetns(t)
	l := nettest.Connect(t, q, w)
	delNetns(t, q)
	return nettest.WaitUntil(3*time.Second, func() bool { return nettest.LinkGone(w, l.NameB) }) < 0
}

// kernelStacks returns the kernel stacks of tasks whose stack mentions any
// of the functions (e.g. a kworker stuck in cleanup_net).
func kernelStacks(funcs ...string) []string {
	paths, _ := filepath.Glob("/proc/[0-9]*/stack")
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		for _, f := range funcs {
			if strings.Contains(s, f) {
				comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm"))
				lines := strings.Split(strings.TrimSpace(s), "\n")
				if len(lines) > 12 {
					lines = lines[:12]
				}
				out = append(out, strings.TrimSpace(string(comm))+": "+strings.Join(lines, " <- "))
				break
			}
		}
	}
	return out
}
