// Package cli_test runs the sockreap-hook binary as an operator would: the
// commands the README shows, their exit codes, JSON output and refusals.
package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/testbin"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	nettest.RunHelper()
	// Metrics off (a directory that does not exist) for every command the
	// tests run: the host's node_exporter directory stays untouched.
	os.Setenv("SOCKREAP_METRICS_DIR", filepath.Join(os.TempDir(), "sockreap-test-no-metrics"))
	testbin.Main(m, "sockreap-hook")
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(testbin.Path("sockreap-hook"), args...))
}

// runIn runs sockreap-hook inside the named network namespace.
func runIn(t *testing.T, netnsName string, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command("ip", append([]string{"netns", "exec", netnsName, testbin.Path("sockreap-hook")}, args...)...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	args := cmd.Args
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(cmd.Environ(), "SOCKREAP_STATE_DIR="+t.TempDir())
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	return r
}

// oneLine asserts a usage error: exit 2 and a single line on stderr that
// contains every want.
func oneLine(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != 2 {
		t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if !strings.Contains(l, "warning:") {
			t.Errorf("more than one error line: %q", r.stderr)
		}
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not mention %q", last, w)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := run(t, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "drain") || !strings.Contains(r.stdout, "doctor") {
		t.Errorf("--help: exit %d, %q", r.code, r.stdout)
	}
	for _, c := range []string{"ls", "drain", "doctor", "version"} {
		r := run(t, c, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: sockreap-hook "+c) {
			t.Errorf("%s --help: exit %d, %q %q", c, r.code, r.stdout, r.stderr)
		}
	}
	if r := run(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "sockreap-hook ") {
		t.Errorf("version: exit %d, %q", r.code, r.stdout)
	}
}

func TestBadInvocations(t *testing.T) {
	if r := run(t); r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("no arguments: exit %d, want 2 with usage on stderr", r.code)
	}
	oneLine(t, run(t, "frobnicate"), "unknown command", "frobnicate")
	oneLine(t, run(t, "drain"), "--netns", "--pid")
	oneLine(t, run(t, "drain", "--netns", "/a", "--pid", "3"), "exactly one")
	oneLine(t, run(t, "drain", "--bogus"), "bogus")
	oneLine(t, run(t, "drain", "--netns", "/nonexistent/netns"), "/nonexistent/netns")
	oneLine(t, run(t, "drain", "--netns", "/etc/hostname"), "/etc/hostname", "not a network namespace")
	oneLine(t, run(t, "drain", "--netns", "/var/run/x", "--timeout", "-1s"), "--timeout")
	oneLine(t, run(t, "drain", "--netns", "/var/run/x", "--orphans", "maybe"), "--orphans")
	oneLine(t, run(t, "ls", "--pid", "999999999"), "999999999")
}

func TestRefusesOwnAndHostNetns(t *testing.T) {
	nettest.RequireRoot(t)
	// sockreap runs in the host's namespace here: that is what it says.
	oneLine(t, run(t, "drain", "--netns", "/proc/self/ns/net"), "refusing", "host's network namespace")
	// Inside another namespace, its own is refused as its own.
	x := nettest.NewNetns(t)
	oneLine(t, runIn(t, x.Name, "drain", "--netns", "/proc/self/ns/net"), "refusing", "own network namespace")
	oneLine(t, run(t, "drain", "--pid", "1"), "")
	oneLine(t, run(t, "ls", "--netns", "/proc/self/ns/net"), "refusing")
}

func TestDrainRefusesLiveProcess(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	x.Start(t, "sleep", "60")
	// Wait until sleep runs inside the namespace.
	nettest.WaitUntil(20*time.Second, func() bool {
		r := run(t, "drain", "--netns", x.Path)
		return strings.Contains(r.stderr, "sleep")
	})
	oneLine(t, run(t, "drain", "--netns", x.Path), "refusing", "live process", "sleep", "--force")
	if r := run(t, "drain", "--netns", x.Path, "--force"); r.code != 0 {
		t.Errorf("drain --force: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, "drain", "--netns", x.Path, "--dry-run"); r.code != 0 {
		t.Errorf("drain --dry-run with live process: exit %d: %s", r.code, r.stderr)
	}
}

// orphanNetns returns a namespace X holding a zero-window orphan to a peer
// in P, linked by a veth whose P end is returned.
func orphanNetns(t *testing.T) (x, p *nettest.Netns, peerDev string) {
	x, p = nettest.NewNetns(t), nettest.NewNetns(t)
	l := nettest.Connect(t, x, p)
	for _, dst := range []netip.Addr{l.B4, l.B6} {
		lst := p.Listen(t, netip.AddrPortFrom(dst, 9100), 8, 4096)
		c := x.Dial(t, netip.AddrPortFrom(dst, 9100))
		nettest.Accept(t, lst)
		nettest.Fill(t, c)
		c.Close()
	}
	return x, p, l.NameB
}

func TestLsShowsOwners(t *testing.T) {
	nettest.RequireRoot(t)
	x, _, _ := orphanNetns(t)
	// A live listener held by this test process.
	x.Listen(t, netip.MustParseAddrPort("127.0.0.1:9200"), 4, 0)
	r := run(t, "ls", "--netns", x.Path, "--json")
	if r.code != 0 {
		t.Fatalf("ls: exit %d: %s", r.code, r.stderr)
	}
	var entries []struct {
		Protocol, State, Local, Remote, Owner string
		PID                                   int
		Command                               string
	}
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	owners := map[string]int{}
	for _, e := range entries {
		owners[e.Owner]++
		if e.Owner == "process" && (e.PID != os.Getpid() || e.State != "LISTEN") {
			t.Errorf("process entry %+v, want this test's listener (pid %d)", e, os.Getpid())
		}
	}
	if owners["orphan"] != 2 || owners["process"] != 1 {
		t.Errorf("owners %v, want 2 orphans and 1 process", owners)
	}
	table := run(t, "ls", "--netns", x.Path)
	if !strings.Contains(table.stdout, "FIN-WAIT-1") || !strings.Contains(table.stdout, "orphan") || !strings.Contains(table.stdout, "(pid ") {
		t.Errorf("ls table:\n%s", table.stdout)
	}
}

func TestDrainJSONFreesNetns(t *testing.T) {
	nettest.RequireRoot(t)
	x, p, peerDev := orphanNetns(t)
	r := run(t, "drain", "--netns", x.Path, "--json")
	if r.code != 0 {
		t.Fatalf("drain: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("drain --json: %v: %s", err, r.stdout)
	}
	for _, k := range []string{"found", "destroyed", "remaining", "duration_us"} {
		if _, ok := rep[k].(float64); !ok {
			t.Errorf("drain --json lacks integer %q: %s", k, r.stdout)
		}
	}
	if rep["found"].(float64) != 2 || rep["destroyed"].(float64) != 2 || rep["remaining"].(float64) != 0 {
		t.Errorf("report %s, want found 2 destroyed 2 remaining 0", r.stdout)
	}
	if ss := x.SS(t); len(ss) != 0 {
		t.Errorf("ss after drain:\n%s", strings.Join(ss, "\n"))
	}
	if nettest.DeleteAndWatch(t, x, p, peerDev, nettest.FreeWait) < 0 {
		t.Errorf("drained netns still alive %v after deletion", nettest.FreeWait)
	}
}

func TestDrainExitOneWhenSocketsRemain(t *testing.T) {
	nettest.RequireRoot(t)
	x, _, _ := orphanNetns(t)
	// Spared orphans remain: exit 1, and the text report says what is left.
	r := run(t, "drain", "--netns", x.Path, "--orphans", "spare")
	if r.code != 1 || !strings.Contains(r.stdout, "left: tcp") || !strings.Contains(r.stdout, "orphan") {
		t.Errorf("drain --orphans spare: exit %d, %q", r.code, r.stdout)
	}
}

func TestDoctor(t *testing.T) {
	nettest.RequireRoot(t)
	r := run(t, "doctor", "--json")
	if r.code != 0 {
		t.Fatalf("doctor: exit %d: %s", r.code, r.stderr)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	if d["kernel"] != unix.ByteSliceToString(u.Release[:]) {
		t.Errorf("doctor kernel %v", d["kernel"])
	}
	for _, k := range []string{"destroy", "tcp", "udp", "time_wait", "orphan_safe"} {
		if _, ok := d[k].(bool); !ok {
			t.Errorf("doctor --json lacks %q: %s", k, r.stdout)
		}
	}
	if t := run(t, "doctor"); !strings.Contains(t.stdout, "SOCK_DESTROY") {
		panic(t.stdout)
	}
}

// drain takes its protocols and orphan policy from the configuration file
// the hook uses, so a manual drain spares what the hook would spare; a
// flag still wins over the file.
func TestDrainHonoursConfigFile(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	x.BindUDP(t, netip.MustParseAddrPort("127.0.0.1:7101"), netip.MustParseAddrPort("127.0.0.1:7102"))
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("protocols = [\"tcp\"]\norphans = \"spare\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "drain", "--netns", x.Path, "--config", cfg, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"found":0`) {
		t.Errorf("drain with protocols = [\"tcp\"]: exit %d, %s %s; want the UDP socket left alone", r.code, r.stdout, r.stderr)
	}
	if ss := x.SS(t); len(ss) != 1 || !strings.HasPrefix(ss[0], "udp") {
		t.Errorf("ss after a TCP-only drain: %q, want the UDP socket", ss)
	}
	// The same file through $SOCKREAP_CONFIG, then overridden by --protocols.
	cmd := exec.Command(testbin.Path("sockreap-hook"), "drain", "--netns", x.Path, "--json")
	cmd.Env = append(os.Environ(), "SOCKREAP_CONFIG="+cfg)
	if r := runCmd(t, cmd); r.code != 0 || !strings.Contains(r.stdout, `"found":0`) {
		t.Errorf("drain with $SOCKREAP_CONFIG: exit %d, %s %s; want the UDP socket left alone", r.code, r.stdout, r.stderr)
	}
	// --force: this test process holds the socket from outside the
	// namespace, and a drain otherwise keeps such sockets.
	cmd = exec.Command(testbin.Path("sockreap-hook"), "drain", "--netns", x.Path, "--protocols", "udp", "--json", "--force")
	cmd.Env = append(os.Environ(), "SOCKREAP_CONFIG="+cfg)
	if r := runCmd(t, cmd); r.code != 0 || !strings.Contains(r.stdout, `"found":1`) {
		t.Errorf("drain --protocols udp: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	if ss := x.SS(t); len(ss) != 0 && !strings.Contains(ss[0], "UNCONN") {
		t.Errorf("ss after the UDP drain: %q", ss)
	}
}
