package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &Env{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e})
	return code, o.String(), e.String()
}

// fakeShim is an executable file standing in for sockreap-shim.
func fakeShim(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sockreap-shim")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigureDockerCLI(t *testing.T) {
	shim := fakeShim(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := `{"log-driver": "journald", "runtimes": {"other": {"path": "/x"}}}`
	if err := os.WriteFile(cfg, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	// --dry-run prints and writes nothing.
	code, out, errs := runCLI("configure", "docker", "--config", cfg, "--shim", shim, "--dry-run")
	if code != 0 || !strings.Contains(out, shim) || !strings.Contains(out, "journald") {
		t.Fatalf("dry run: %d %q %q", code, out, errs)
	}
	if b, _ := os.ReadFile(cfg); string(b) != orig {
		t.Fatalf("dry run wrote the file: %s", b)
	}
	code, out, errs = runCLI("configure", "docker", "--config", cfg, "--shim", shim)
	if code != 0 || !strings.Contains(out, "backup:") {
		t.Fatalf("configure: %d %q %q", code, out, errs)
	}
	backups, _ := filepath.Glob(cfg + ".sockreap-bak.*")
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	if b, _ := os.ReadFile(backups[0]); string(b) != orig {
		t.Errorf("backup holds %s", b)
	}
	b, _ := os.ReadFile(cfg)
	for _, want := range []string{"journald", `"other"`, shim} {
		if !strings.Contains(string(b), want) {
			t.Errorf("daemon.json lacks %s:\n%s", want, b)
		}
	}
	code, out, _ = runCLI("configure", "docker", "--config", cfg, "--shim", shim)
	if code != 0 || !strings.Contains(out, "already configured") {
		t.Errorf("second run: %d %q", code, out)
	}
	if backups, _ := filepath.Glob(cfg + ".sockreap-bak.*"); len(backups) != 1 {
		t.Errorf("second run made another backup: %v", backups)
	}
}

func TestConfigureBadInputOneLine(t *testing.T) {
	shim := fakeShim(t)
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "daemon.json")
	badTOML := filepath.Join(dir, "config.toml")
	os.WriteFile(badJSON, []byte(`{"runtimes": `), 0o644)
	os.WriteFile(badTOML, []byte("version = 2\n[plugins\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"configure", "docker", "--config", badJSON, "--shim", shim}, badJSON},
		{[]string{"configure", "containerd", "--config", badTOML, "--shim", shim}, badTOML},
		{[]string{"configure", "docker", "--config", badJSON, "--shim", "/nonexistent/sockreap-shim"}, "/nonexistent/sockreap-shim"},
		{[]string{"configure", "docker", "--config", badJSON, "--shim", "relative/shim"}, "absolute"},
		{[]string{"configure", "containerd", "--config", badTOML, "--shim", shim, "--config-version", "7"}, "--config-version"},
		{[]string{"configure", "hooksd", "--dir", dir, "--hook", "/nonexistent/sockreap-hook"}, "/nonexistent/sockreap-hook"},
	} {
		code, out, errs := runCLI(tc.args...)
		if code != ExitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: code %d, stderr %q (want one line naming %s), stdout %q", tc.args, code, errs, tc.want, out)
		}
	}
	if b, _ := os.ReadFile(badJSON); string(b) != `{"runtimes": ` {
		t.Errorf("bad input was overwritten: %s", b)
	}
}

func TestConfigureContainerdCRIOHooksdCLI(t *testing.T) {
	shim := fakeShim(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	code, out, errs := runCLI("configure", "containerd", "--config", cfg, "--shim", shim, "--config-version", "3", "--set-default")
	if code != 0 || !strings.Contains(out, "restart") {
		t.Fatalf("containerd: %d %q %q", code, out, errs)
	}
	b, _ := os.ReadFile(cfg)
	if !strings.Contains(string(b), "io.containerd.cri.v1.runtime") || !strings.Contains(string(b), "default_runtime_name = 'sockreap'") {
		t.Errorf("containerd v3 config:\n%s", b)
	}
	dropIn := filepath.Join(dir, "crio.conf.d", "99-sockreap.conf")
	if code, out, errs := runCLI("configure", "crio", "--file", dropIn, "--shim", shim); code != 0 || !strings.Contains(out, "restart") {
		t.Fatalf("crio: %d %q %q", code, out, errs)
	}
	if b, _ := os.ReadFile(dropIn); !strings.Contains(string(b), shim) {
		t.Errorf("crio drop-in:\n%s", b)
	}
	hooks := filepath.Join(dir, "hooks.d")
	if code, out, errs := runCLI("configure", "hooksd", "--dir", hooks, "--hook", shim); code != 0 {
		t.Fatalf("hooksd: %d %q %q", code, out, errs)
	}
	files, _ := filepath.Glob(filepath.Join(hooks, "*.json"))
	if len(files) != 2 {
		t.Errorf("hooks.d files: %v", files)
	}
	if code, out, _ := runCLI("configure", "hooksd", "--dir", hooks, "--hook", shim); code != 0 || strings.Count(out, "already configured") != 2 {
		t.Errorf("hooksd second run: %q", out)
	}
}
