package engines

import (
	"encoding/json"

	"github.com/pelletier/go-toml/v2"
	"github.com/sockreap/sockreap/internal/nettest"
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
	deadline := time.Now().Add(30 * time.Second)
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
	deadline := time.Now().Add(30 * time.Second)
	for d.docker(t, "info", "--format", "{{.DefaultRuntime}}") != name {
		if time.Now().After(deadline) {
			t.Fatalf("dockerd's default runtime is not %s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestContainerdRemove: configure containerd --remove takes the handler
// and the default it set out again, and containerd restarted on the file
// loads CRI with runc as its default; --reload says containerd cannot.
func TestContainerdRemove(t *testing.T) {
	c := newContainerd(t)
	run(t, hookBin(), "configure", "containerd", "--config", c.config, "--shim", shimBin(), "--set-default")
	c.start(t)
	c.expectCRI(t)
	c.stop()

	out := run(t, hookBin(), "configure", "containerd", "--config", c.config, "--shim", shimBin(), "--remove", "--reload")
	t.Logf("configure containerd --remove --reload:\n%s", out)
	if !strings.Contains(out, "backup:") || !strings.Contains(out, "cannot reload") {
		t.Errorf("--remove --reload: no backup, or no word that containerd cannot reload:\n%s", out)
	}
	var dump map[string]any
	if err := toml.Unmarshal([]byte(run(t, "containerd", "--config", c.config, "config", "dump")), &dump); err != nil {
		t.Fatalf("containerd config dump: %v", err)
	}
	ctd := []string{"plugins", "io.containerd.grpc.v1.cri", "containerd"}
	if dig(dump, append(ctd, "runtimes", "sockreap")...) != nil {
		t.Error("containerd still has the sockreap handler after --remove")
	}
	if got := dig(dump, append(ctd, "default_runtime_name")...); got != "runc" {
		t.Errorf("CRI default runtime %v after --remove, want runc", got)
	}
	if dig(dump, append(ctd, "runtimes", "runc", "options", "SystemdCgroup")...) != false || dig(dump, "oom_score") == nil {
		t.Error("--remove changed the operator's settings")
	}
	c.start(t)
	c.expectCRI(t)
}

// TestPodmanHooksDRemove: after configure hooksd --remove, podman runs no
// sockreap hook any more, and other files of the directory stay.
func TestPodmanHooksDRemove(t *testing.T) {
	pm := newPodman(t)
	args := []string{"configure", "hooksd", "--dir", pm.hooksDir, "--hook", hookBin(),
		"--hook-arg=--state-dir=" + pm.hooks.stateDir, "--hook-arg=--log=" + pm.hooks.log, "--hook-arg=--metrics-dir=" + pm.hooks.metricsDir}
	run(t, hookBin(), args...)
	other := filepath.Join(pm.hooksDir, "other.json")
	if err := os.WriteFile(other, []byte(`{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {"annotations": {"never": "x"}}, "stages": ["prestart"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "localhost/sockreap-test/busybox:" + nettest.Unique("t")
	pm.podman(t, "import", rootfsTar(t), image)
	runOne := func() string {
		id := pm.podman(t, append(append([]string{"run", "-d", "--network", "none"}, podmanUlimits...), image, "sleep", "100")...)
		pm.podman(t, "rm", "-f", "-t", "0", id)
		return id
	}
	with := runOne()
	out := run(t, hookBin(), append(args, "--remove", "--reload")...)
	t.Logf("configure hooksd --remove --reload:\n%s", out)
	if !strings.Contains(out, "removed (backup:") || !strings.Contains(out, "cannot reload") {
		t.Errorf("--remove --reload:\n%s", out)
	}
	without := runOne()
	b, _ := os.ReadFile(pm.hooks.log)
	if !strings.Contains(string(b), with) {
		t.Fatalf("the hooks did not run before --remove; log:\n%s", b)
	}
	if strings.Contains(string(b), without) {
		t.Errorf("a sockreap hook ran after --remove; log:\n%s", b)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("--remove touched another hooks.d file: %v", err)
	}
}
