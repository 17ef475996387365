package engines

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDockerRemove: configure docker --remove undoes what configure added,
// on a real dockerd: the sockreap runtime is gone after the reload, the
// default runtime is runc again, the operator's keys and runtimes stay, and
// the file before the removal is kept as a backup.
func TestDockerRemove(t *testing.T) {
	d := startDockerd(t, map[string]any{"log-level": "warn"})
	before, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	d.configure(t, "--set-default", "--reload")
	waitDefault(t, d, "sockreap")

	out := d.configure(t, "--remove", "--reload")
	t.Logf("configure docker --remove --reload:\n%s", out)
	if !strings.Contains(out, "backup:") || !strings.Contains(out, "sent SIGHUP") {
		t.Errorf("--remove --reload: no backup or no reload:\n%s", out)
	}
	waitDefault(t, d, "runc")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(d.docker(t, "info", "--format", "{{json .Runtimes}}"), `"sockreap"`) {
		if time.Now().After(deadline) {
			t.Fatal("dockerd still lists runtime sockreap after --remove --reload")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var was, now map[string]any
	after, _ := os.ReadFile(d.config)
	if json.Unmarshal(before, &was) != nil || json.Unmarshal(after, &now) != nil {
		t.Fatalf("daemon.json before %s, after %s", before, after)
	}
	// What was there before comes back, but for the sockreap runtime
	// (the harness seeds it with runtimeArgs; without sockreap it cannot
	// run) and a default runtime that says runc.
	delete(was["runtimes"].(map[string]any), "sockreap")
	was["default-runtime"] = "runc"
	if b, _ := json.Marshal(was); string(b) != mustJSON(t, now) {
		t.Errorf("--remove did not restore daemon.json:\nbefore %s\nafter  %s", before, after)
	}
	backups, _ := filepath.Glob(d.config + ".sockreap-bak.*")
	if len(backups) < 2 {
		t.Errorf("backups %v, want one per change", backups)
	}
	if again := d.configure(t, "--remove", "--reload"); !strings.Contains(again, "not changed") || !strings.Contains(again, "not signalled") {
		t.Errorf("second --remove changed something:\n%s", again)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitDefault waits until dockerd's default runtime is name.
func waitDefault(t *testing.T, d *dockerd, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for d.docker(t, "info", "--format", "{{.DefaultRuntime}}") != name {
		if time.Now().After(deadline) {
			t.Fatalf("dockerd's default runtime is not %s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
