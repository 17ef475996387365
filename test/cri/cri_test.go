package cri

import (
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
	"github.com/sockreap/sockreap/internal/nettest"
)

// scenario is a pod's life on a running daemon of mode m.
type scenario struct {
	name string
	run  func(t *testing.T, m *critest.Mode, d *critest.Daemon)
}

// scenarios run in every mode, in order, on one daemon per mode. Their
// bodies are in pod_test.go and network_test.go.
var scenarios = []scenario{
	{"orphan/pid=CONTAINER", func(t *testing.T, m *critest.Mode, d *critest.Daemon) {
		orphanPod(t, m, d, critest.NamespaceContainer, 1)
	}},
	{"orphan/pid=POD", func(t *testing.T, m *critest.Mode, d *critest.Daemon) {
		orphanPod(t, m, d, critest.NamespacePod, 1)
	}},
	{"two-app-containers", func(t *testing.T, m *critest.Mode, d *critest.Daemon) {
		orphanPod(t, m, d, critest.NamespaceContainer, 2)
	}},
	{"pause-killed-first", pauseKilledFirst},
	{"containerd-restarted", containerdRestarted},
	{"hostNetwork", hostNetwork},
}

// TestCRI runs every scenario in every mode (critest.Modes): containerd
// 1.6 and 2.2 with the sockreap runtime handler, plain runc as the
// baseline.
func TestCRI(t *testing.T) {
	need(t)
	for _, m := range critest.Modes(bins()) {
		t.Run(m.Name, func(t *testing.T) {
			if r := m.Skip(); r != "" {
				t.Skip(r)
			}
			d := critest.NewDaemon(t, m.Engine)
			if m.Prepare != nil {
				m.Prepare(t, d)
			}
			d.Start(t)
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, m, d) })
			}
		})
	}
}

// freeDeadline is how long after `crictl stopp` returns the pod's
// namespace may take to go where the mode drains (see nettest.FreeWait;
// how soon it goes is measured by the CRI bench).
const freeDeadline = nettest.FreeWait

// lingerCheck is how long after `crictl stopp` a namespace must still be
// there where nothing drains: its orphan keeps it for minutes.
const lingerCheck = 3 * time.Second

// stopAndExpect stops pod p, whose namespace w watches, removes it and
// checks what mode m promises: freed right away where it drains, still
// there a while later where it does not. Then the mode's own check.
func stopAndExpect(t *testing.T, m *critest.Mode, d *critest.Daemon, p *critest.Pod, w *critest.Witness) {
	t.Helper()
	stopp := p.Stop(t)
	if m.Drains {
		took := w.Freed(freeDeadline)
		if took < 0 {
			later := w.Freed(10 * time.Second)
			t.Errorf("pod %s: network namespace still there %v after crictl stopp (freed %v later, -1: not yet)", p.ID, freeDeadline, later)
		} else {
			t.Logf("crictl stopp took %v; the pod's network namespace was freed %v after it returned", stopp.Round(time.Millisecond), took.Round(time.Millisecond))
		}
	} else {
		if took := w.Freed(lingerCheck); took >= 0 {
			t.Errorf("pod %s: network namespace freed %v after crictl stopp with nothing draining: the scenario leaves no orphan", p.ID, took)
		} else {
			t.Logf("crictl stopp took %v; the pod's network namespace still there %v later, as expected with nothing draining", stopp.Round(time.Millisecond), lingerCheck)
		}
	}
	p.Remove(t)
	if m.Check != nil {
		m.Check(t, d, p, true)
	}
	if t.Failed() {
		t.Logf("containerd log (tail):\n%s", d.LogTail(20))
	}
}
