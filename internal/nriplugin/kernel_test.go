package nriplugin

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/nettest"
)

// realDrainer is the drain core the binary uses, with its probe cache in a
// directory of the test's own.
func realDrainer(t *testing.T) Drainer {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	return newDrainer(cfg)
}

// orphanIn leaves a FIN-WAIT-1 orphan in x towards a peer in p that never
// reads, and returns the ss lines of x.
func orphanIn(t *testing.T, x, p *nettest.Netns, link *nettest.Link) {
	t.Helper()
	ap := netip.AddrPortFrom(link.B4, 7100)
	lst := p.Listen(t, ap, 4, 4096)
	c := x.Dial(t, ap)
	nettest.Accept(t, lst)
	nettest.Fill(t, c)
	c.Close()
	if nettest.WaitUntil(20*time.Second, func() bool { return strings.Contains(strings.Join(x.SS(t), "\n"), "FIN-WAIT-1") }) < 0 {
		t.Fatalf("no orphan in %s: %v", x.Name, x.SS(t))
	}
}

func TestStopPodSandboxDrainsARealNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	x, p := nettest.NewNetns(t), nettest.NewNetns(t)
	link := nettest.Connect(t, x, p)
	orphanIn(t, x, p, link)

	pl, buf := newTestPlugin(realDrainer(t), 0)
	if err := pl.StopPodSandbox(context.Background(), pod(x.Path)); err != nil {
		t.Fatal(err)
	}
	if left := x.SS(t); len(left) != 0 {
		t.Errorf("sockets left after StopPodSandbox (ss): %v\nlog: %s", left, buf)
	}
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["action"] != string(Drained) || l[0]["destroyed"].(float64) < 1 {
		t.Errorf("want one drained line with destroyed ≥ 1, got %s", buf)
	}
}

func TestStopPodSandboxSkipsANamespaceWithALiveProcess(t *testing.T) {
	nettest.RequireRoot(t)
	x, p := nettest.NewNetns(t), nettest.NewNetns(t)
	link := nettest.Connect(t, x, p)
	orphanIn(t, x, p, link)
	// A live process inside holding a socket of its own: the namespace is
	// in use (an orphan alone no process can use, so it would be drained).
	x.Start(t, "busybox", "nc", "-l", "-p", "7300")
	if nettest.WaitUntil(20*time.Second, func() bool { return strings.Contains(strings.Join(x.SS(t), "\n"), ":7300") }) < 0 {
		t.Fatal("the listener never appeared in the namespace")
	}

	pl, buf := newTestPlugin(realDrainer(t), 0)
	if err := pl.StopPodSandbox(context.Background(), pod(x.Path)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(x.SS(t), "\n"), "FIN-WAIT-1") {
		t.Errorf("the orphan went although a live process shares the namespace: %v", x.SS(t))
	}
	if l := logLines(t, buf); len(l) != 1 || l[0]["action"] != string(SkippedShared) {
		t.Errorf("want one skipped-shared line, got %s", buf)
	}
}

func TestStopPodSandboxOfAReleasedNamespace(t *testing.T) {
	nettest.RequireRoot(t)
	pl, buf := newTestPlugin(realDrainer(t), 0)
	if err := pl.StopPodSandbox(context.Background(), pod("/var/run/netns/"+nettest.Unique("gone"))); err != nil {
		t.Fatal(err)
	}
	if l := logLines(t, buf); len(l) != 1 || l[0]["action"] != string(NothingToDrain) || l[0]["level"] != "INFO" {
		t.Errorf("want one INFO nothing-to-drain line, got %s", buf)
	}
}

func TestPodFromASynchronizationIsDrainedWhenItsPauseExits(t *testing.T) {
	nettest.RequireRoot(t)
	x, p := nettest.NewNetns(t), nettest.NewNetns(t)
	link := nettest.Connect(t, x, p)
	orphanIn(t, x, p, link)
	pause := x.Start(t, "sleep", "60") // the pause stand-in

	pl, buf := newTestPlugin(realDrainer(t), 0)
	pd := pod(x.Path)
	pd.Pid = uint32(pause.Process.Pid)
	other := pod(x.Path) // a pid that is not in the namespace: not watched
	other.Id, other.Pid = "sb2", 1
	pl.Synchronize(context.Background(), []*api.PodSandbox{pd, other})
	if !strings.Contains(strings.Join(x.SS(t), "\n"), "FIN-WAIT-1") {
		t.Fatal("drained while the pause process still ran")
	}
	_ = pause.Process.Kill()
	_ = pause.Wait()
	if nettest.WaitUntil(20*time.Second, func() bool { return len(x.SS(t)) == 0 }) < 0 {
		t.Fatalf("the namespace was not drained after its pause process exited: %v\nlog: %s", x.SS(t), buf)
	}
	// The runtime's StopPodSandbox, where it comes, finds it done: the
	// pod keeps one line.
	if err := pl.StopPodSandbox(context.Background(), pd); err != nil {
		t.Fatal(err)
	}
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["event"] != "PauseExited" || l[0]["action"] != string(Drained) {
		t.Errorf("want one line, the PauseExited drain; got %s", buf)
	}
	pl.stopWatching()
}

func TestEmptyNamespaceIsDrainedCheaply(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	pl, buf := newTestPlugin(realDrainer(t), 0)
	if err := pl.StopPodSandbox(context.Background(), pod(x.Path)); err != nil {
		t.Fatal(err)
	}
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["action"] != string(Drained) || l[0]["destroyed"] != 0.0 {
		t.Errorf("want drained, nothing destroyed, got %s", buf)
	}
}

func TestPauseExitWithAppStillInsideLeavesItToStopPodSandbox(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	start := func(args ...string) *exec.Cmd {
		c := exec.Command("ip", append([]string{"netns", "exec", x.Name}, args...)...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	pause := start("sleep", "60")
	app := start("busybox", "nc", "-l", "-p", "7400") // holds a socket inside
	if nettest.WaitUntil(20*time.Second, func() bool { return strings.Contains(strings.Join(x.SS(t), "\n"), ":7400") }) < 0 {
		t.Fatal("the app's listener never appeared")
	}
	pl, buf := newTestPlugin(realDrainer(t), 0)
	pd := pod(x.Path)
	pd.Pid = uint32(pause.Process.Pid)
	pl.Synchronize(context.Background(), []*api.PodSandbox{pd})
	_ = pause.Process.Kill()
	_ = pause.Wait()
	if nettest.WaitUntil(20*time.Second, func() bool { return strings.Contains(buf.String(), "PauseExited") }) < 0 {
		t.Fatalf("no PauseExited line: %s", buf)
	}
	_ = app.Process.Kill()
	_ = app.Wait()
	if err := pl.StopPodSandbox(context.Background(), pd); err != nil {
		t.Fatal(err)
	}
	l := logLines(t, buf)
	if len(l) != 2 || l[0]["action"] != string(SkippedShared) || l[1]["event"] != "StopPodSandbox" || l[1]["action"] != string(Drained) {
		t.Errorf("want skipped-shared at the pause's exit, then a StopPodSandbox drain; got %s", buf)
	}
}
