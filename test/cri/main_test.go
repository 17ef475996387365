// Package cri runs pods the way kubelet does — crictl → containerd's CRI →
// runc, CNI bridge — on Debian's containerd 1.6 and on containerd 2.x, in
// every mode of critest.Modes: each scenario must free the pod's network
// namespace right after `crictl stopp` where the mode drains, and leave it
// lingering (an orphan holds it) where nothing drains.
package cri

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/critest"
	"github.com/sockreap/sockreap/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m, "sockreap-hook", "sockreap-shim", "sockreap-nri") }

func bins() critest.Bins {
	return critest.Bins{Hook: testbin.Path("sockreap-hook"), Shim: testbin.Path("sockreap-shim"), NRI: testbin.Path("sockreap-nri")}
}

// need skips the test unless the rig can run here.
func need(t *testing.T) {
	t.Helper()
	if r := critest.Missing(); r != "" {
		t.Skip(r)
	}
}

// startDaemon skips t unless the rig and engine e are here, and starts a
// daemon of e.
func startDaemon(t *testing.T, e *critest.Engine) *critest.Daemon {
	t.Helper()
	need(t)
	if r := e.Missing(); r != "" {
		t.Skip(r)
	}
	d := critest.NewDaemon(t, e)
	d.Start(t)
	return d
}

// execCommand runs a command and returns its trimmed combined output.
func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func itoa(i int) string { return strconv.Itoa(i) }
