package cli

import (
	"bytes"
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
