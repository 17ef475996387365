package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
)

// hostile is a command name that clears the screen and forges a line.
const hostile = "e\x1b[2J\nfake"

func noRawControl(t *testing.T, what, out string, lines int) {
	t.Helper()
	if strings.ContainsAny(out, "\x1b") {
		t.Errorf("%s prints a raw escape sequence:\n%q", what, out)
	}
	if lines > 0 && strings.Count(strings.TrimRight(out, "\n"), "\n")+1 != lines {
		t.Errorf("%s: %d lines, want %d (a forged line?):\n%q", what, strings.Count(out, "\n"), lines, out)
	}
}

// TestHostileNamesQuoted: a container process named with an escape
// sequence and a newline, and a container id holding them, come out
// quoted in pins, drain's refusal and the hook's error.
func TestHostileNamesQuoted(t *testing.T) {
	nettest.RequireRoot(t)
	n := nettest.NewNetns(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	bin := filepath.Join(t.TempDir(), hostile)
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := n.Start(t, bin, "60").Process.Pid
	nettest.WaitUntil(20*time.Second, func() bool {
		id, err := netns.IDOf("/proc/" + strconv.Itoa(pid) + "/ns/net")
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return err == nil && id == n.NS.ID && strings.HasPrefix(string(comm), "e\x1b")
	})

	r := run(t, "drain", "--netns", n.Path)
	noRawControl(t, "drain's refusal", r.stderr, 1)
	if !strings.Contains(r.stderr, strconv.Quote(hostile)) {
		t.Errorf("drain's refusal does not quote the command name: %q", r.stderr)
	}

	dir := stateDir(t)
	id := nettest.Unique("txt")
	state := map[string]any{"ociVersion": "1.0.2", "id": id, "status": "created", "pid": pid, "bundle": t.TempDir()}
	log := filepath.Join(t.TempDir(), "log")
	if r := hook(t, state, "createRuntime", "--state-dir", dir, "--log", log, "--strict"); r.code != 0 {
		t.Fatalf("createRuntime: %d %s", r.code, r.stderr)
	}
	r = hook(t, nil, "pins", "--state-dir", dir)
	noRawControl(t, "pins", r.stdout, 2)
	if !strings.Contains(r.stdout, strconv.Quote(hostile)) {
		t.Errorf("pins does not quote the command name:\n%s", r.stdout)
	}
	r = hook(t, nil, "gc", "--state-dir", dir, "--min-age", "0", "--log", log)
	noRawControl(t, "gc", r.stdout, 1)
	if !strings.Contains(r.stdout, "kept") || !strings.Contains(r.stdout, strconv.Quote(hostile)) {
		t.Errorf("gc does not keep the pin or quote the command name:\n%s", r.stdout)
	}
	_ = hook(t, state, "poststop", "--state-dir", dir, "--log", log)

	// A container id with the same characters: refused, and quoted.
	for _, bad := range []string{"c\n1", "c\x1b[2J"} {
		state := map[string]any{"ociVersion": "1.0.2", "id": bad, "status": "created", "pid": pid, "bundle": t.TempDir()}
		r := hook(t, state, "createRuntime", "--state-dir", dir, "--log", log, "--strict")
		if r.code == 0 {
			t.Errorf("id %q pinned", bad)
		}
		noRawControl(t, "createRuntime's error", r.stderr, 1)
		if !strings.Contains(r.stderr, strconv.Quote(bad)) {
			t.Errorf("error does not quote id %q: %q", bad, r.stderr)
		}
	}
}
