// Package critest runs pods the way kubelet does, for the CRI suite
// (test/cri) and the CRI benchmark (test/bench/cri): a containerd of the
// caller's own (Debian's 1.6, or 2.x built by scripts/containerd2.sh) with
// its own root, state, sockets, CNI bridge and locally made images, driven
// through its CRI with crictl. Pods reach test peers over the CNI bridge on
// a documentation subnet the host does not use, with no route elsewhere;
// nothing leaves the machine.
//
// A Mode is one way of running pods (engine, runtime handler, what makes
// sockreap drain); Modes lists them, so a new integration adds one entry
// and every scenario runs against it.
package critest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// T is what the rig needs of a test: testing.TB satisfies it, and the
// benchmark supplies its own.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// CacheDir is where scripts/cri-deps.sh puts what Debian does not package
// (crictl, containerd 2.x).
func CacheDir() string {
	if d := os.Getenv("SOCKREAP_CI_CACHE"); d != "" {
		return d
	}
	return "/var/cache/sockreap-ci"
}

// Crictl returns the path of crictl: the one scripts/cri-deps.sh built,
// else one on PATH, else "".
func Crictl() string {
	if p := filepath.Join(CacheDir(), "bin", "crictl"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	return ""
}

// Missing names what the rig needs and this machine lacks, with what
// installs it, or returns "" when everything is there. Callers skip with
// it.
func Missing() string {
	if os.Geteuid() != 0 {
		return "needs root: containerd, network namespaces, CNI (run: sudo make test)"
	}
	for _, p := range []string{"ip", "ss", "ctr", "runc", "busybox", "tar"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Sprintf("needs %s (scripts/deps.sh installs it)", p)
		}
	}
	if Crictl() == "" {
		return "needs crictl (make deps builds it into " + filepath.Join(CacheDir(), "bin") + ")"
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if !isExecutable(filepath.Join(CNIBinDir, p)) {
			return fmt.Sprintf("needs the CNI plugin %s in %s (apt-get install containernetworking-plugins)", p, CNIBinDir)
		}
	}
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0
}

// run runs a command and returns its trimmed combined output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// must runs a command, failing t on error.
func must(t T, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
