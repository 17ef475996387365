package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/pin/pintest"
)

// hookEnv is a state dir and log file of one test.
type hookEnv struct {
	t        *testing.T
	stateDir string
	logFile  string
}

func newHookEnv(t *testing.T) *hookEnv {
	dir := t.TempDir()
	h := &hookEnv{t: t, stateDir: filepath.Join(dir, "state"), logFile: filepath.Join(dir, "hook.log")}
	pintest.Cleanup(t, h.stateDir)
	return h
}

// run runs sockreap-hook args with stdin and returns the exit code and stderr.
func (h *hookEnv) run(stdin string, args ...string) (int, string) {
	var out, errb bytes.Buffer
	// The defaults, whatever /etc/sockreap holds, with metrics off: the
	// host's node_exporter directory stays untouched.
	cfg := filepath.Join(h.t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("metrics_dir = \"\"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	full := append([]string{args[0], "--state-dir", h.stateDir, "--log", h.logFile, "--config", cfg}, args[1:]...)
	code := Main(full, &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	if out.Len() > 0 {
		h.t.Errorf("%v wrote to stdout (it belongs to the runtime): %q", args, out.String())
	}
	return code, errb.String()
}

// lines returns the JSON log lines written so far.
func (h *hookEnv) lines() []map[string]any {
	h.t.Helper()
	b, err := os.ReadFile(h.logFile)
	if err != nil {
		h.t.Fatalf("read log: %v", err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			h.t.Fatalf("log line is not JSON: %v: %q", err, l)
		}
		out = append(out, m)
	}
	return out
}

func (h *hookEnv) last() map[string]any {
	l := h.lines()
	return l[len(l)-1]
}

func state(id string, pid int, bundle string, ann map[string]string) string {
	b, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": id, "status": "created", "pid": pid, "bundle": bundle, "annotations": ann})
	return string(b)
}

func TestStageBadInputFailsOpen(t *testing.T) {
	h := newHookEnv(t)
	cases := []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"empty state", "", []string{"poststop"}, "empty OCI state"},
		{"malformed state", "{not json", []string{"createRuntime"}, "malformed OCI state"},
		{"no pid", state("c1", 0, "/nonexistent", nil), []string{"createRuntime"}, "has no pid"},
		{"dead pid", state("c1", 999999999, "/nonexistent", nil), []string{"createRuntime"}, "/proc/999999999/ns/net"},
		{"missing bundle", state("c1", 0, "/nonexistent/bundle", nil), []string{"poststop"}, "no pin at"},
		{"path as id", state("../../etc", 0, "/x", nil), []string{"poststop"}, "cannot name a pin"},
		{"bad flag", state("c1", 0, "/x", nil), []string{"poststop", "--no-such-flag"}, "invalid flags"},
	}
	for _, tc := range cases {
		code, stderr := h.run(tc.stdin, tc.args...)
		if code != ExitOK {
			t.Errorf("%s: exit %d (stderr %q), want 0: hooks fail open", tc.name, code, stderr)
			continue
		}
		l := h.last()
		if e, _ := l["error"].(string); !strings.Contains(e, tc.want) || l["level"] != "ERROR" {
			t.Errorf("%s: log line %v, want level ERROR and an error containing %q", tc.name, l, tc.want)
		}
	}
	// --strict turns the same failures into a non-zero exit with the reason.
	code, stderr := h.run("", "poststop", "--strict")
	if code == ExitOK || !strings.Contains(stderr, "empty OCI state") {
		t.Errorf("--strict with empty state: exit %d, stderr %q", code, stderr)
	}
}

func TestStageMissingBundleWithoutPin(t *testing.T) {
	h := newHookEnv(t)
	bundle := t.TempDir() // exists, but no config.json
	if code, _ := h.run(state("c2", 0, bundle, nil), "poststop"); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if e, _ := h.last()["error"].(string); !strings.Contains(e, "config.json") {
		t.Errorf("log error %q does not name config.json", e)
	}
}

func TestStagesThatDoNothing(t *testing.T) {
	h := newHookEnv(t)
	for _, stage := range []string{"createContainer", "startContainer", "poststart"} {
		if code, _ := h.run(state("c3", 1, "/b", nil), stage); code != ExitOK {
			t.Errorf("%s: exit %d", stage, code)
		}
		l := h.last()
		if l["stage"] != stage || l["container"] != "c3" || l["level"] != "INFO" {
			t.Errorf("%s: log line %v", stage, l)
		}
	}
}

func TestEffectiveBudget(t *testing.T) {
	for _, tc := range []struct {
		budget time.Duration
		oci    int
		want   time.Duration
	}{
		{2 * time.Second, 0, 2 * time.Second},
		{2 * time.Second, 10, 2 * time.Second},
		{2 * time.Second, 1, 800 * time.Millisecond},
		{5 * time.Second, 3, 2500 * time.Millisecond},
	} {
		if got := effectiveBudget(tc.budget, tc.oci); got != tc.want {
			t.Errorf("effectiveBudget(%s, %d) = %s, want %s", tc.budget, tc.oci, got, tc.want)
		}
	}
}

func TestStageLifecycle(t *testing.T) {
	nettest.RequireRoot(t)
	h := newHookEnv(t)
	n := nettest.NewNetns(t)
	id := nettest.Unique("ctr")
	cmd := n.Start(t, "sleep", "300")
	st := state(id, cmd.Process.Pid, t.TempDir(), nil)

	if code, _ := h.run(st, "createRuntime"); code != ExitOK {
		t.Fatalf("createRuntime exit %d", code)
	}
	l := h.last()
	if l["msg"] != "pinned" || l["netns"] != n.NS.ID.String() || l["container"] != id {
		t.Fatalf("createRuntime log %v", l)
	}
	store := pin.Store{Dir: h.stateDir}
	if p, err := store.Get(id); err != nil || p.NS != n.NS.ID {
		t.Fatalf("no pin of %s after createRuntime: %+v %v", n.NS.ID, p, err)
	}

	// An orphan in the namespace, for the drain to find: a connection to
	// a peer namespace that does not read, filled, then closed.
	peer := nettest.NewNetns(t)
	link := nettest.Connect(t, n, peer)
	ap := netip.AddrPortFrom(link.B4, 7001)
	peer.Listen(t, ap, 8, 4096)
	c := n.Dial(t, ap)
	nettest.Fill(t, c)
	c.Close()
	if got := n.SS(t); len(got) != 1 {
		t.Fatalf("want one orphan in the namespace, ss shows %q", got)
	}

	// Poststop while a process still runs inside: nothing drained.
	if code, _ := h.run(st, "poststop"); code != ExitOK {
		t.Fatalf("poststop exit %d", code)
	}
	l = h.last()
	if !strings.Contains(fmt.Sprint(l["msg"]), "live processes") || l["report"] != nil {
		t.Fatalf("poststop with a live process: log %v, want skipped and no report", l)
	}
	if got := n.SS(t); len(got) != 1 {
		t.Fatalf("the orphan is gone although the drain was skipped: %q", got)
	}
	if _, err := store.Get(id); err == nil {
		t.Errorf("pin kept after poststop")
	}

	// Pin again, end the process, poststop drains.
	if code, _ := h.run(st, "createRuntime"); code != ExitOK {
		t.Fatal("createRuntime")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if code, _ := h.run(st, "poststop"); code != ExitOK {
		t.Fatal("poststop")
	}
	l = h.last()
	rep, _ := l["report"].(map[string]any)
	if !strings.HasPrefix(fmt.Sprint(l["msg"]), "drained") || rep == nil || rep["found"].(float64) < 1 || rep["remaining"].(float64) != 0 {
		t.Fatalf("poststop log %v, want a drain that found the orphan and left 0", l)
	}
	if got := n.SS(t); len(got) != 0 {
		t.Errorf("sockets left after the drain: %q", got)
	}
	if pins, _ := store.List(); len(pins) != 0 {
		t.Errorf("pins left: %+v", pins)
	}
}

func TestStageOptOut(t *testing.T) {
	nettest.RequireRoot(t)
	h := newHookEnv(t)
	n := nettest.NewNetns(t)
	id := nettest.Unique("ctr")
	cmd := n.Start(t, "sleep", "300")
	n.Listen(t, netip.MustParseAddrPort("127.0.0.1:7002"), 8, 0)
	st := state(id, cmd.Process.Pid, t.TempDir(), map[string]string{"io.sockreap.drain": "false"})
	h.run(st, "createRuntime")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	h.run(st, "poststop")
	if l := h.last(); !strings.Contains(fmt.Sprint(l["msg"]), "opted out") {
		t.Errorf("log %v", l)
	}
	if got := n.SS(t); len(got) != 1 {
		t.Errorf("opted-out namespace was touched: %q", got)
	}
}

func TestStagePinAtOwnNamespaceRefused(t *testing.T) {
	nettest.RequireRoot(t)
	h := newHookEnv(t)
	// A host socket that must survive.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	id := nettest.Unique("ctr")
	store := pin.Store{Dir: h.stateDir}
	// Forge a pin that points at our own (here: the host's) namespace.
	if _, err := store.Pin("/proc/self/ns/net", pin.Meta{ID: id}); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.run(state(id, 0, t.TempDir(), nil), "poststop"); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	ll := h.last()
	if e, _ := ll["error"].(string); !strings.Contains(e, "refusing") {
		t.Errorf("log %v, want a refusal", ll)
	}
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("host listener damaged: %v", err)
	}
	c.Close()
	if _, err := store.Get(id); err == nil {
		t.Errorf("bogus pin not released")
	}
}

func TestConfigureRunc(t *testing.T) {
	bundle := t.TempDir()
	cfg := `{"ociVersion":"1.0.2","process":{"args":["sh"]},"x-vendor":{"keep":true}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	hook, _ := exec.LookPath("true")
	hook, _ = filepath.Abs(hook)
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	if code := Main([]string{"configure", "runc", "--bundle", bundle, "--hook", hook, "--state-dir", "/run/x"}, env); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "added") {
		t.Errorf("stdout %q", out.String())
	}
	out.Reset()
	if code := Main([]string{"configure", "runc", "--bundle", bundle, "--hook", hook, "--state-dir", "/run/x"}, env); code != ExitOK || !strings.Contains(out.String(), "nothing changed") {
		t.Errorf("second run: exit %d, %q", code, out.String())
	}
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	if doc["x-vendor"] == nil || !strings.Contains(string(b), `"--state-dir=/run/x"`) || strings.Count(string(b), `"poststop": [`) != 1 {
		t.Errorf("config.json after configure: %s", b)
	}
	errb.Reset()
	if code := Main([]string{"configure", "runc", "--bundle", t.TempDir(), "--hook", hook}, env); code != ExitUsage || !strings.Contains(errb.String(), "config.json") {
		t.Errorf("bundle without config.json: exit %d, %q", code, errb.String())
	}
	if code := Main([]string{"configure", "runc"}, env); code != ExitUsage {
		t.Errorf("no --bundle: exit %d", code)
	}
}

func TestRunUnknownStage(t *testing.T) {
	h := newHookEnv(t)
	f, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, state("c9", 0, "/b", nil))
	f.Seek(0, 0)
	var errb bytes.Buffer
	handled, err := RunUnknownStage(&Env{Stdin: f, Stdout: &errb, Stderr: &errb}, "bogusStage", []string{"--log", h.logFile, "--state-dir", h.stateDir, "--oci-timeout=10"})
	if !handled || err != nil {
		t.Fatalf("RunUnknownStage with a state on stdin = %v, %v; want handled, no error", handled, err)
	}
	if l := h.last(); l["stage"] != "bogusStage" || l["container"] != "c9" || !strings.Contains(fmt.Sprint(l["error"]), "unknown stage") {
		t.Errorf("log %v", l)
	}
	// Not a hook (no state on stdin): the caller reports an unknown command.
	empty, _ := os.Open(os.DevNull)
	defer empty.Close()
	if handled, _ := RunUnknownStage(&Env{Stdin: empty, Stdout: &errb, Stderr: &errb}, "lss", nil); handled {
		t.Error("handled a typo without a state on stdin")
	}
	if handled, _ := RunUnknownStage(&Env{Stdin: strings.NewReader("{}"), Stdout: &errb, Stderr: &errb}, "x", nil); handled {
		t.Error("handled a non-file stdin")
	}
}

// --strict=false is not strict: not for arguments that fail to parse, and
// not over strict = true in the configuration file.
func TestStrictFalse(t *testing.T) {
	h := newHookEnv(t)
	if code, stderr := h.run("", "poststop", "--strict=false", "--no-such-flag"); code != ExitOK {
		t.Errorf("--strict=false with a bad flag: exit %d (%q), want 0: fail open", code, stderr)
	}
	if code, _ := h.run("", "poststop", "--strict", "--no-such-flag"); code == ExitOK {
		t.Error("--strict with a bad flag exited 0")
	}
	cfg := filepath.Join(t.TempDir(), "strict.toml")
	if err := os.WriteFile(cfg, []byte("strict = true\nmetrics_dir = \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.run("", "poststop", "--config", cfg); code == ExitOK {
		t.Error("strict = true in the file: a failing stage exited 0")
	}
	if code, stderr := h.run("", "poststop", "--config", cfg, "--strict=false"); code != ExitOK {
		t.Errorf("--strict=false over strict = true: exit %d (%q), want 0", code, stderr)
	}
}
