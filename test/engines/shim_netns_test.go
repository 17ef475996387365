package engines

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
)

// TestShimNamedNetns: the shim gives a container whose config.json names
// a network namespace mount (as containerd's CRI pods do) the poststop
// hook alone — no createRuntime process, no pin — and poststop still
// drains the namespace through that path. A container whose namespace
// runc creates gets both hooks and is pinned and drained as before. Real
// runc through sockreap-shim, a real TCP peer, ss as the witness.
func TestShimNamedNetns(t *testing.T) {
	need(t, "runc", "ss", "nsenter")
	hooks := newHookEnv(t, t.TempDir())
	rt := &runtime{bin: shimBin(), root: t.TempDir(), env: []string{"SOCKREAP_SHIM_CONFIG=" + hooks.shimConfig}}

	// orphan runs containerCmd in bundle b until its data is stuck, then
	// kills it: an orphan is left in the container's namespace.
	orphan := func(t *testing.T, b, id string) (*peer, int) {
		t.Helper()
		t.Cleanup(func() { _ = exec.Command("runc", "--root", rt.root, "delete", "--force", id).Run() })
		if res := rt.run(t, "/", "create", "--bundle", b, id); res.code != 0 {
			t.Fatalf("create: %d %s", res.code, res.stderr)
		}
		var st struct{ Pid int }
		if err := json.Unmarshal([]byte(rt.run(t, "/", "state", id).stdout), &st); err != nil || st.Pid <= 0 {
			t.Fatalf("state of %s: %v", id, err)
		}
		p := newPeer(t)
		p.plug(t, st.Pid)
		if res := rt.run(t, "/", "start", id); res.code != 0 {
			t.Fatalf("start: %d %s", res.code, res.stderr)
		}
		p.waitStuck(t, st.Pid)
		if res := rt.run(t, "/", "kill", id, "KILL"); res.code != 0 {
			t.Fatalf("kill: %d %s", res.code, res.stderr)
		}
		waitStopped(t, rt, id)
		return p, st.Pid
	}

	t.Run("named path: poststop alone", func(t *testing.T) {
		x := nettest.NewNetns(t)
		b := newBundle(t, containerCmd...)
		ocitest.Edit(t, b, func(doc map[string]any) { ocitest.SetNetnsPath(doc, x.Path) })
		id := nettest.Unique("srn")
		orphan(t, b, id)
		if n := sockreapHooks(t, b, "createRuntime"); n != 0 {
			t.Errorf("%d sockreap createRuntime hooks in config.json, want none: the engine keeps %s", n, x.Path)
		}
		if n := sockreapHooks(t, b, "poststop"); n != 1 {
			t.Errorf("%d sockreap poststop hooks in config.json, want 1", n)
		}
		if out := run(t, hookBin(), "pins", "--state-dir", hooks.stateDir); strings.Contains(out, id) {
			t.Errorf("container %s pinned although its namespace has a path:\n%s", id, out)
		}
		if len(x.SS(t)) == 0 {
			t.Fatal("no socket in the namespace before delete: the scenario left no orphan")
		}
		if res := rt.run(t, "/", "delete", id); res.code != 0 {
			t.Fatalf("delete: %d %s", res.code, res.stderr)
		}
		l := logLine(t, hooks, id, "poststop")
		if l.Action != "drained" || l.Report == nil || l.Report.Found < 1 || l.Report.Remaining != 0 {
			t.Errorf("poststop log line %+v: want a drain through %s that found the orphan and left nothing", l, x.Path)
		}
		if ss := x.SS(t); len(ss) != 0 {
			t.Errorf("sockets left in %s after poststop:\n%s", x.Path, strings.Join(ss, "\n"))
		}
	})

	t.Run("no path: pinned and drained", func(t *testing.T) {
		b := newBundle(t, containerCmd...)
		id := nettest.Unique("srn")
		p, _ := orphan(t, b, id)
		if n := sockreapHooks(t, b, "createRuntime"); n != 1 {
			t.Errorf("%d sockreap createRuntime hooks in config.json, want 1", n)
		}
		if out := run(t, hookBin(), "pins", "--state-dir", hooks.stateDir); !strings.Contains(out, id) {
			t.Fatalf("container %s not pinned at createRuntime:\n%s", id, out)
		}
		if res := rt.run(t, "/", "delete", id); res.code != 0 {
			t.Fatalf("delete: %d %s", res.code, res.stderr)
		}
		p.expectFreed(t, "runc through the shim, namespace made by runc", hooks)
		if l := logLine(t, hooks, id, "poststop"); l.Action != "drained" || l.Pin == "" || l.Report == nil || l.Report.Found < 1 {
			t.Errorf("poststop log line %+v: want a drain through the pin that found the orphan", l)
		}
		hooks.checkNoPin(t, id)
	})
}

// sockreapHooks counts the sockreap hooks at stage in the bundle's
// config.json.
func sockreapHooks(t *testing.T, bundle, stage string) int {
	t.Helper()
	var spec struct {
		Hooks map[string][]struct{ Path string } `json:"hooks"`
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range spec.Hooks[stage] {
		if filepath.Base(h.Path) == "sockreap-hook" {
			n++
		}
	}
	return n
}

// hookLine is what a test reads of a hook's log line.
type hookLine struct {
	Stage, Container, Action, Pin string
	Report                        *struct{ Found, Remaining int }
}

// logLine returns the one log line of container id at stage.
func logLine(t *testing.T, h *hookEnv, id, stage string) hookLine {
	t.Helper()
	b, _ := os.ReadFile(h.log)
	var found []hookLine
	for _, s := range strings.Split(string(b), "\n") {
		var l hookLine
		if json.Unmarshal([]byte(s), &l) == nil && l.Container == id && l.Stage == stage {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s log lines for %s, want 1:\n%s", len(found), stage, id, tail(b, 6))
	}
	return found[0]
}
