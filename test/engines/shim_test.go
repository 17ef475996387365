package engines

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/ocitest"
)

// result is what a runtime command did, as a caller sees it.
type result struct {
	code           int
	stdout, stderr string
}

// runtime runs one runc-compatible binary with its own --root.
type runtime struct {
	bin, root string
	env       []string
}

func (r *runtime) run(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(r.bin, append([]string{"--root", r.root}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), r.env...)
	// Files, not pipes: a detached container inherits the runtime's
	// stdio, and a pipe would stay open as long as the container runs.
	so, se := tempFile(t), tempFile(t)
	cmd.Stdout, cmd.Stderr = so, se
	err := cmd.Run()
	res := result{stdout: readBack(t, so), stderr: readBack(t, se)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", r.bin, strings.Join(args, " "), err)
	}
	return res
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readBack(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var timeField = regexp.MustCompile(`time="[^"]*" `)

// normal strips what legitimately differs between two runs: timestamps,
// and the container ids, pids and paths given as pairs.
func normal(s string, repl ...string) string {
	s = timeField.ReplaceAllString(s, "")
	return strings.NewReplacer(repl...).Replace(s)
}

// newBundle writes a runc bundle running args on the busybox rootfs.
func newBundle(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "-C", rootfs, "-xf", rootfsTar(t))
	ocitest.Spec(t, dir, args...)
	return dir
}

// TestShimTransparent runs the same container lifecycle through runc and
// through sockreap-shim (which runs runc) and expects the same results:
// outputs, states, exit codes, error messages.
func TestShimTransparent(t *testing.T) {
	need(t, "runc")
	hooks := newHookEnv(t, t.TempDir())
	rts := map[string]*runtime{
		"runc": {bin: "runc", root: t.TempDir()}, // argv[0] "runc", as engines call it
		"shim": {bin: shimBin(), root: t.TempDir(), env: []string{"SOCKREAP_SHIM_CONFIG=" + hooks.shimConfig}},
	}
	type step struct {
		name string
		args []string
		// what to compare besides the exit code
		stdout, stderr bool
		state          string // expected "status" of a state command
	}
	steps := []step{
		{name: "create", args: []string{"create", "--bundle", "@B", "@ID"}},
		{name: "state created", args: []string{"state", "@ID"}, state: "created"},
		{name: "start", args: []string{"start", "@ID"}},
		{name: "state running", args: []string{"state", "@ID"}, state: "running"},
		{name: "exec", args: []string{"exec", "@ID", "/bin/sh", "-c", "echo out; echo err >&2"}, stdout: true, stderr: true},
		{name: "exec exit code", args: []string{"exec", "@ID", "/bin/sh", "-c", "exit 7"}},
		{name: "pause", args: []string{"pause", "@ID"}},
		{name: "state paused", args: []string{"state", "@ID"}, state: "paused"},
		{name: "resume", args: []string{"resume", "@ID"}},
		{name: "list", args: []string{"list", "-q"}, stdout: true},
		{name: "delete running fails", args: []string{"delete", "@ID"}, stderr: true},
		{name: "kill", args: []string{"kill", "@ID", "KILL"}},
		{name: "delete unknown fails", args: []string{"delete", "@ID2"}, stderr: true},
		{name: "delete", args: []string{"delete", "--force", "@ID"}},
		{name: "state of deleted fails", args: []string{"state", "@ID"}, stderr: true},
		{name: "create missing bundle fails", args: []string{"create", "--bundle", "/nonexistent-sockreap", "@ID"}, stderr: true},
		{name: "unknown command", args: []string{"frobnicate"}, stdout: true, stderr: true},
		{name: "version", args: []string{"--version"}, stdout: true},
		{name: "run exit code and stdio", args: []string{"run", "--bundle", "@RB", "@RID"}, stdout: true, stderr: true},
	}
	results := map[string][]result{}
	for name, rt := range rts {
		id, rid := nettest.Unique("srt-"+name), nettest.Unique("srr-"+name)
		b := newBundle(t, "/bin/sleep", "1000")
		rb := newBundle(t, "/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 5")
		t.Cleanup(func() {
			_ = exec.Command(rt.bin, "--root", rt.root, "delete", "--force", id).Run()
			_ = exec.Command(rt.bin, "--root", rt.root, "delete", "--force", rid).Run()
		})
		repl := []string{id, "@ID", rid, "@RID", b, "@B", rb, "@RB", rt.root, "@ROOT"}
		for _, s := range steps {
			args := make([]string, len(s.args))
			for i, a := range s.args {
				args[i] = strings.NewReplacer("@ID2", id+"-none", "@ID", id, "@RID", rid, "@RB", rb, "@B", b).Replace(a)
			}
			res := rt.run(t, b, args...)
			if s.state != "" {
				var st struct{ Status string }
				if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Status != s.state {
					t.Errorf("%s %s: status %q (%v), want %q", name, s.name, st.Status, err, s.state)
				}
			}
			res.stdout, res.stderr = normal(res.stdout, repl...), normal(res.stderr, repl...)
			results[name] = append(results[name], res)
			if s.name == "kill" {
				waitStopped(t, rt, id)
			}
		}
		hooks.checkNoPin(t, id)
	}
	for i, s := range steps {
		a, b := results["runc"][i], results["shim"][i]
		t.Logf("%-28s exit runc %d, shim %d", s.name, a.code, b.code)
		if a.code != b.code {
			t.Errorf("%s: exit code runc %d, shim %d\nrunc: %s%s\nshim: %s%s", s.name, a.code, b.code, a.stdout, a.stderr, b.stdout, b.stderr)
		}
		if s.stdout && a.stdout != b.stdout {
			t.Errorf("%s: stdout differs\nrunc: %q\nshim: %q", s.name, a.stdout, b.stdout)
		}
		if s.stderr && a.stderr != b.stderr {
			t.Errorf("%s: stderr differs\nrunc: %q\nshim: %q", s.name, a.stderr, b.stderr)
		}
	}
	if got := results["shim"][len(steps)-1]; got.code != 5 || got.stdout != "to-stdout\n" || got.stderr != "to-stderr\n" {
		t.Errorf("run through the shim: code %d stdout %q stderr %q; want 5, the container's own output", got.code, got.stdout, got.stderr)
	}
	// The shim's containers got the hooks (and only they): the hook log
	// has their poststop lines.
	b, _ := os.ReadFile(hooks.log)
	if !strings.Contains(string(b), "srt-shim") || strings.Contains(string(b), "srt-runc") {
		t.Errorf("hook log does not show hooks for the shim's containers only:\n%s", tail(b, 10))
	}
}

func waitStopped(t *testing.T, rt *runtime, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := rt.run(t, "/", "state", id)
		if strings.Contains(res.stdout, `"stopped"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: container %s not stopped after kill: %s%s", rt.bin, id, res.stdout, res.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNoPin fails if a pin of container id is left.
func (h *hookEnv) checkNoPin(t *testing.T, id string) {
	t.Helper()
	if out := run(t, hookBin(), "pins", "--state-dir", h.stateDir); strings.Contains(out, id) {
		t.Errorf("pin of %s left behind:\n%s", id, out)
	}
}

// TestShimLogAndErrors checks the shim's own messages: warnings go to the
// --log file in the requested format while the container still starts
// (fail open), and a missing real runtime is a clear error.
func TestShimLogAndErrors(t *testing.T) {
	need(t, "runc")
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			rt := &runtime{bin: shimBin(), root: t.TempDir(), env: []string{"SOCKREAP_HOOK=/nonexistent/sockreap-hook"}}
			b := newBundle(t, "/bin/true")
			id := nettest.Unique("srl")
			log := filepath.Join(t.TempDir(), "runtime.log")
			res := rt.run(t, b, "--log", log, "--log-format", format, "create", "--bundle", b, id)
			t.Cleanup(func() { _ = exec.Command("runc", "--root", rt.root, "delete", "--force", id).Run() })
			if res.code != 0 {
				t.Fatalf("create without a usable hook must still succeed (fail open): %d %s", res.code, res.stderr)
			}
			data, _ := os.ReadFile(log)
			var line string
			for _, l := range strings.Split(string(data), "\n") {
				if strings.Contains(l, "without sockreap hooks") {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no warning in the --log file:\n%s", data)
			}
			var rec map[string]any
			isJSON := json.Unmarshal([]byte(line), &rec) == nil
			if isJSON != (format == "json") || !strings.Contains(line, "level") || !strings.Contains(line, "warn") {
				t.Errorf("warning not in %s format: %s", format, line)
			}
			if isJSON && (rec["level"] != "warning" && rec["level"] != "warn") {
				t.Errorf("level %v, want runc's lower-case warn", rec["level"])
			}
		})
	}
	t.Run("no runtime", func(t *testing.T) {
		rt := &runtime{bin: shimBin(), root: t.TempDir(), env: []string{"SOCKREAP_RUNTIME=/nonexistent/runc"}}
		res := rt.run(t, "/", "list")
		if res.code == 0 || strings.Count(res.stderr, `real runtime "/nonexistent/runc" not found`) != 1 {
			t.Errorf("missing runtime: code %d stderr %q", res.code, res.stderr)
		}
		// Installed under runc's own name ahead of runc in PATH, it
		// skips itself and finds the real one.
		dir := t.TempDir()
		if err := os.Symlink(shimBin(), filepath.Join(dir, "runc")); err != nil {
			t.Fatal(err)
		}
		want := run(t, "runc", "--version")
		asRunc := &runtime{bin: filepath.Join(dir, "runc"), root: t.TempDir(), env: []string{"PATH=" + dir + ":" + os.Getenv("PATH")}}
		if res := asRunc.run(t, "/", "--version"); res.code != 0 || strings.TrimSpace(res.stdout) != want {
			t.Errorf("shim installed as runc: code %d stdout %q stderr %q, want runc's own version", res.code, res.stdout, res.stderr)
		}
		rt.env = []string{"SOCKREAP_RUNTIME=" + shimBin()}
		if res := rt.run(t, "/", "list"); res.code == 0 || !strings.Contains(res.stderr, "sockreap-shim itself") {
			t.Errorf("runtime = the shim: code %d stderr %q", res.code, res.stderr)
		}
	})
}

// TestShimSignals: "run" in the foreground through the shim is runc
// itself (exec, same pid), so a signal to the process the engine started
// reaches the container, and the container's exit code comes back.
func TestShimSignals(t *testing.T) {
	need(t, "runc")
	hooks := newHookEnv(t, t.TempDir())
	root := t.TempDir()
	id := nettest.Unique("srs")
	b := newBundle(t, "/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done")
	t.Cleanup(func() { _ = exec.Command("runc", "--root", root, "delete", "--force", id).Run() })
	cmd := exec.Command(shimBin(), "--root", root, "run", "--bundle", b, id)
	cmd.Env = append(os.Environ(), "SOCKREAP_SHIM_CONFIG="+hooks.shimConfig)
	out := tempFile(t)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readBack(t, out), "ready") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("container did not start: %s", readBack(t, out))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "comm")); strings.TrimSpace(string(comm)) != "runc" {
		t.Errorf("pid %d runs %q, want runc itself (the shim execs it)", cmd.Process.Pid, comm)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("exit after SIGTERM: %v, want code 42 from the container's trap\n%s", err, readBack(t, out))
	}
	hooks.checkNoPin(t, id)
}
