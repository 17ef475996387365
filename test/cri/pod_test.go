package cri

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
)

// peerPort is where the test peers listen.
const peerPort = 8080

// orphanPod: n app containers each stream into a peer on the bridge that
// never reads; stopping the pod kills them with data queued, which leaves
// orphans in the pod's namespace.
func orphanPod(t *testing.T, m *critest.Mode, d *critest.Daemon, pid critest.NamespaceMode, n int) {
	p := d.RunPod(t, critest.PodSpec{Handler: m.Handler, PID: pid})
	peer := d.NewPeer(t, peerPort)
	for i := range n {
		p.Start(t, fmt.Sprintf("app%d", i), peer.OrphanCommand()...)
	}
	peer.WaitStuck(t, p.Netns, n)
	stopAndExpect(t, m, d, p, critest.Watch(t, p.Netns))
}

// pauseKilledFirst: the pause process dies before the app (its pid
// namespace is the app's own, as kubelet asks): the app is the last
// process in the pod's namespace when the pod is stopped.
func pauseKilledFirst(t *testing.T, m *critest.Mode, d *critest.Daemon) {
	p := d.RunPod(t, critest.PodSpec{Handler: m.Handler, PID: critest.NamespaceContainer})
	peer := d.NewPeer(t, peerPort)
	app := p.Start(t, "app", peer.OrphanCommand()...)
	peer.WaitStuck(t, p.Netns, 1)
	w := critest.Watch(t, p.Netns)
	if err := syscall.Kill(p.PausePID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the pause process %d: %v", p.PausePID, err)
	}
	if took := waitFor(30*time.Second, func() bool { return strings.Contains(d.Crictl(t, "pods", "--id", p.ID), "NotReady") }); took < 0 {
		t.Fatalf("pod %s still ready 30s after its pause process was killed:\n%s", p.ID, d.Crictl(t, "pods", "--id", p.ID))
	}
	if !strings.Contains(d.Crictl(t, "ps", "--id", app), "Running") {
		t.Fatalf("the app container stopped with the pause process:\n%s", d.Crictl(t, "ps", "-a", "--id", app))
	}
	stopAndExpect(t, m, d, p, w)
}

// containerdRestarted: containerd restarts while the pod runs (the pod and
// its shims live on); the restarted daemon stops the pod.
func containerdRestarted(t *testing.T, m *critest.Mode, d *critest.Daemon) {
	p := d.RunPod(t, critest.PodSpec{Handler: m.Handler, PID: critest.NamespaceContainer})
	peer := d.NewPeer(t, peerPort)
	p.Start(t, "app", peer.OrphanCommand()...)
	peer.WaitStuck(t, p.Netns, 1)
	w := critest.Watch(t, p.Netns)
	d.Restart(t)
	stopAndExpect(t, m, d, p, w)
}

// waitFor polls cond every 100 ms until it holds or d passes; it returns
// how long that took, or -1.
func waitFor(d time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			return -1
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}
