package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/pin"
)

// stats names a missing metrics directory and what to do, on one line,
// exit 2; on a directory it prints the tables or the exposition.
func TestStats(t *testing.T) {
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	missing := filepath.Join(t.TempDir(), "none")
	if code := Main([]string{"stats", "--metrics-dir", missing}, env); code != ExitUsage ||
		!strings.Contains(errb.String(), missing) || !strings.Contains(errb.String(), "--metrics-dir") || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
		t.Errorf("missing directory: exit %d, stderr %q", code, errb.String())
	}
	dir := t.TempDir()
	tf, err := metrics.OpenTextfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.Record(metrics.DrainEvent{Frontend: metrics.FrontendHook, Stage: "poststop", Outcome: "skipped-shared"}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := Main([]string{"stats", "--metrics-dir", dir}, env); code != ExitOK || !strings.Contains(out.String(), "skipped-shared") {
		t.Errorf("stats: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"stats", "--metrics-dir", dir, "--prom"}, env); code != ExitOK ||
		!strings.Contains(out.String(), `sockreap_drains_total{frontend="hook",outcome="skipped-shared"} 1`) {
		t.Errorf("stats --prom: exit %d\n%s", code, out.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, metrics.PromFile))
	if !bytes.Equal(b, out.Bytes()) {
		t.Errorf("stats --prom differs from %s", metrics.PromFile)
	}
}

// A hook counts its run in the metrics directory; one it cannot use (others
// may write it) is a warning in its log line, and the hook still exits 0.
func TestStageMetrics(t *testing.T) {
	h := newHookEnv(t)
	dir := t.TempDir()
	if code, _ := h.run(state("m1", 0, "/nonexistent/bundle", nil), "poststop", "--metrics-dir", dir); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, metrics.PromFile))
	if err != nil || !strings.Contains(string(b), `sockreap_hook_runs_total{stage="poststop",outcome="failed"} 1`) ||
		!strings.Contains(string(b), `sockreap_hook_failures_total{stage="poststop"} 1`) {
		t.Errorf("exposition after a failed poststop (%v):\n%s", err, b)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if code, _ := h.run(state("m2", 0, "/nonexistent/bundle", nil), "poststop", "--metrics-dir", open); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	ws, _ := h.last()["warnings"].([]any)
	if len(ws) == 0 || !strings.Contains(fmt.Sprint(ws), "metrics: metrics directory "+open) {
		t.Errorf("log line %v: want a warning naming the unusable metrics directory", h.last())
	}
	if _, err := os.Stat(filepath.Join(open, metrics.PromFile)); err == nil {
		t.Error("wrote into a directory others may write")
	}
}

// A createRuntime that pins writes no metrics: its run waits in the pin
// and is counted, once, by whoever releases the pin (poststop, else gc),
// in the same update as their own event.
func TestCreateRuntimeCountedOnRelease(t *testing.T) {
	nettest.RequireRoot(t)
	h := newHookEnv(t)
	dir := t.TempDir()
	n := nettest.NewNetns(t)
	exposition := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, metrics.PromFile))
		return string(b)
	}
	pinned := func(k int) string {
		return fmt.Sprintf(`sockreap_hook_runs_total{stage="createRuntime",outcome="pinned"} %d`, k)
	}
	for i, release := range []string{"poststop", "gc"} {
		cmd := n.Start(t, "sleep", "300")
		id := nettest.Unique("ctr")
		st := state(id, cmd.Process.Pid, t.TempDir(), nil)
		if code, _ := h.run(st, "createRuntime", "--metrics-dir", dir); code != ExitOK || h.last()["msg"] != "pinned" {
			t.Fatalf("createRuntime: exit %d, log %v", code, h.last())
		}
		if strings.Contains(exposition(), pinned(i+1)) {
			t.Fatalf("createRuntime counted itself at once:\n%s", exposition())
		}
		p, err := (pin.Store{Dir: h.stateDir}).Get(pin.KeyOf(id, ""))
		if err != nil || p.Meta == nil || p.Meta.Uncounted == nil || p.Meta.Config != nil {
			t.Fatalf("pin %+v (%v): want its run left uncounted", p, err)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		code := 0
		if release == "gc" {
			var out bytes.Buffer
			code = Main([]string{"gc", "--state-dir", h.stateDir, "--metrics-dir", dir, "--min-age", "0"}, &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out})
		} else {
			code, _ = h.run(st, release, "--metrics-dir", dir)
		}
		if code != ExitOK {
			t.Fatalf("%s: exit %d", release, code)
		}
		if !strings.Contains(exposition(), pinned(i+1)) ||
			!strings.Contains(exposition(), fmt.Sprintf(`sockreap_stage_duration_seconds_count{stage="createRuntime"} %d`, i+1)) {
			t.Errorf("after %s released the pin, want %q:\n%s", release, pinned(i+1), exposition())
		}
	}
}

// --metrics-dir "" turns metrics off, whatever the environment and the
// configuration file name: nothing is written there.
func TestMetricsDirEmptyFlagIsOff(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOCKREAP_METRICS_DIR", dir)
	h := newHookEnv(t)
	if code, _ := h.run(state("m3", 0, "/nonexistent/bundle", nil), "poststop", "--metrics-dir="); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, metrics.PromFile)); err == nil {
		t.Errorf(`--metrics-dir "" wrote %s`, filepath.Join(dir, metrics.PromFile))
	}
	if code, _ := h.run(state("m4", 0, "/nonexistent/bundle", nil), "poststop"); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, metrics.PromFile)); err != nil {
		t.Errorf("without the flag, $SOCKREAP_METRICS_DIR is not used: %v", err)
	}
}
