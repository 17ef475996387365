package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/metrics"
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
