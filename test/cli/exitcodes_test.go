package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/testbin"
)

// Exit codes, the same for every command: 0 done (a hook that fails open
// too), 1 sockets remain, 2 usage or input error, 3 runtime failure.
const (
	exitOK, exitRemaining, exitUsage, exitFailure = 0, 1, 2, 3
)

type exitCase struct {
	name  string
	args  []string
	stdin string
	code  int
	say   string // stderr (or stdout, for a 0) contains it
}

// runCase runs one case with the hooks' log and configuration kept in the
// test's own files.
func runCase(t *testing.T, tc exitCase) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml") // empty: the defaults
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testbin.Path("sockreap-hook"), tc.args...)
	cmd.Env = append(os.Environ(), "SOCKREAP_CONFIG="+cfg, "SOCKREAP_LOG="+filepath.Join(dir, "hook.log"))
	if tc.stdin != "" {
		cmd.Stdin = strings.NewReader(tc.stdin)
	}
	r := runCmd(t, cmd)
	if r.code != tc.code {
		t.Errorf("%s: %v: exit %d, want %d\nstdout %q\nstderr %q", tc.name, tc.args, r.code, tc.code, r.stdout, r.stderr)
		return
	}
	if !strings.Contains(r.stderr+r.stdout, tc.say) {
		t.Errorf("%s: %v: output does not say %q\nstdout %q\nstderr %q", tc.name, tc.args, tc.say, r.stdout, r.stderr)
	}
	if (tc.code == exitUsage || tc.code == exitFailure) && !strings.Contains(r.stderr, "Usage:") {
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "sockreap-hook") {
			t.Errorf("%s: %v: last stderr line %q does not name the program", tc.name, tc.args, lines[len(lines)-1])
		}
	}
}

func ociState(id string, pid int, bundle string) string {
	b, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": id, "status": "stopped", "pid": pid, "bundle": bundle})
	return string(b)
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	badJSON := filepath.Join(dir, "daemon.json")
	goodJSON := filepath.Join(dir, "good.json")
	toml := filepath.Join(dir, "config.toml")
	shim := filepath.Join(dir, "sockreap-shim")
	for p, s := range map[string]string{file: "x", badJSON: `{"runtimes": `, goodJSON: "{}", toml: ""} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(shim, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noBundle := ociState("exit-c1", 0, filepath.Join(dir, "no-bundle"))
	cases := []exitCase{
		{"no command", nil, "", exitUsage, "Usage:"},
		{"unknown command", []string{"lss"}, "", exitUsage, "unknown command"},
		{"help", []string{"--help"}, "", exitOK, "Exit codes: 0 done; 1 sockets remain"},
		{"command help", []string{"drain", "--help"}, "", exitOK, "Exit codes:"},
		{"version", []string{"version"}, "", exitOK, "sockreap-hook"},

		// Hooks fail open; --strict turns input errors into 2 and
		// runtime failures into 3.
		{"stage, empty state", []string{"poststop"}, "", exitOK, ""},
		{"stage, empty state, strict", []string{"poststop", "--strict"}, "", exitUsage, "empty OCI state"},
		{"stage, malformed state, strict", []string{"createRuntime", "--strict"}, "{nope", exitUsage, "malformed OCI state"},
		{"stage, bad flag", []string{"poststop", "--no-such-flag"}, noBundle, exitOK, ""},
		{"stage, bad flag, strict", []string{"poststop", "--strict", "--no-such-flag"}, noBundle, exitUsage, "no-such-flag"},
		{"stage, bad flag, strict=false", []string{"poststop", "--strict=false", "--no-such-flag"}, noBundle, exitOK, ""},
		{"stage fails", []string{"poststop", "--state-dir", dir}, noBundle, exitOK, ""},
		{"stage fails, strict", []string{"poststop", "--strict", "--state-dir", dir}, noBundle, exitFailure, "no pin at"},
		{"createRuntime, dead pid, strict", []string{"createRuntime", "--strict", "--state-dir", dir}, ociState("exit-c2", 999999999, dir), exitFailure, "/proc/999999999/ns/net"},
		{"stage that does nothing, strict", []string{"poststart", "--strict"}, noBundle, exitOK, ""},
		{"unknown stage", []string{"bogusStage"}, noBundle, exitOK, ""},
		{"unknown stage, strict", []string{"bogusStage", "--strict"}, noBundle, exitUsage, "unknown stage"},

		{"drain, no target", []string{"drain"}, "", exitUsage, "--netns"},
		{"drain, both targets", []string{"drain", "--netns", "/a", "--pid", "3"}, "", exitUsage, "exactly one"},
		{"drain, missing namespace", []string{"drain", "--netns", "/nonexistent/netns"}, "", exitUsage, "/nonexistent/netns"},
		{"drain, not a namespace", []string{"drain", "--netns", file}, "", exitUsage, "not a network namespace"},
		{"drain, bad timeout", []string{"drain", "--netns", file, "--timeout", "-1s"}, "", exitUsage, "--timeout"},
		{"drain, bad orphan policy", []string{"drain", "--netns", file, "--orphans", "maybe"}, "", exitUsage, "--orphans"},
		{"drain, bad protocol", []string{"drain", "--netns", file, "--protocols", "sctp"}, "", exitUsage, "sctp"},
		{"drain, stray argument", []string{"drain", "x"}, "", exitUsage, "unexpected argument"},
		{"ls, no target", []string{"ls"}, "", exitUsage, "--netns"},
		{"ls, no such process", []string{"ls", "--pid", "999999999"}, "", exitUsage, "999999999"},

		{"gc, stray argument", []string{"gc", "x"}, "", exitUsage, "unexpected argument"},
		{"gc, bad flag", []string{"gc", "--bogus"}, "", exitUsage, "bogus"},
		{"gc, state dir unusable", []string{"gc", "--state-dir", file, "--log", os.DevNull}, "", exitFailure, "state directory"},
		{"gc, nothing pinned", []string{"gc", "--state-dir", dir, "--log", os.DevNull}, "", exitOK, "no pins"},
		{"pins, state dir unusable", []string{"pins", "--state-dir", file}, "", exitFailure, "state directory"},
		{"pins, stray argument", []string{"pins", "x"}, "", exitUsage, "unexpected argument"},
		{"doctor, bad flag", []string{"doctor", "--bogus"}, "", exitUsage, "bogus"},

		{"configure, no target", []string{"configure"}, "", exitUsage, "Targets:"},
		{"configure, unknown target", []string{"configure", "kubelet"}, "", exitUsage, "unknown target"},
		{"configure runc, no bundle", []string{"configure", "runc"}, "", exitUsage, "--bundle"},
		{"configure docker, bad JSON", []string{"configure", "docker", "--config", badJSON, "--shim", shim}, "", exitUsage, badJSON},
		{"configure docker, relative shim", []string{"configure", "docker", "--config", goodJSON, "--shim", "rel/shim"}, "", exitUsage, "absolute"},
		{"configure docker, reload without dockerd", []string{"configure", "docker", "--config", goodJSON, "--shim", shim, "--reload", "--pidfile", filepath.Join(dir, "none.pid")}, "", exitFailure, "reload"},
		{"configure containerd, bad version", []string{"configure", "containerd", "--config", toml, "--shim", shim, "--config-version", "7"}, "", exitUsage, "--config-version"},
		{"configure containerd, reload", []string{"configure", "containerd", "--config", toml, "--shim", shim, "--config-version", "2", "--reload"}, "", exitOK, "cannot reload"},
		{"configure hooksd, missing hook", []string{"configure", "hooksd", "--dir", dir, "--hook", "/nonexistent/sockreap-hook"}, "", exitUsage, "/nonexistent/sockreap-hook"},
		{"configure hooksd, remove nothing", []string{"configure", "hooksd", "--dir", filepath.Join(dir, "hooks.d"), "--remove"}, "", exitOK, "not changed"},
	}
	for _, tc := range cases {
		runCase(t, tc)
	}
}

// The namespace cases need root: refusals are input errors (2), sockets
// left are 1, a clean drain 0.
func TestExitCodesDrain(t *testing.T) {
	nettest.RequireRoot(t)
	clean := nettest.NewNetns(t)
	busy := nettest.NewNetns(t)
	busy.Start(t, "sleep", "60")
	nettest.WaitUntil(20*time.Second, func() bool {
		return strings.Contains(run(t, "drain", "--netns", busy.Path).stderr, "live process")
	})
	x, _, _ := orphanNetns(t)
	for _, tc := range []exitCase{
		{"drain, clean namespace", []string{"drain", "--netns", clean.Path}, "", exitOK, "found 0"},
		{"drain, own namespace", []string{"drain", "--netns", "/proc/self/ns/net"}, "", exitUsage, "refusing"},
		{"drain, live process", []string{"drain", "--netns", busy.Path}, "", exitUsage, "live process"},
		{"drain, sockets remain", []string{"drain", "--netns", x.Path, "--orphans", "spare"}, "", exitRemaining, "remaining 2"},
	} {
		runCase(t, tc)
	}
}
