// Package readme_test runs the sockreap-hook commands README.md shows, so
// that the front door never shows a command that does not work.
package readme_test

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/testbin"
)

// readOnly are the subcommands run here, against the test's own namespace
// and state directory; the ones that change engine or container
// configuration are run by the runc and engine suites.
var readOnly = map[string]bool{"doctor": true, "ls": true, "drain": true, "version": true, "pins": true, "gc": true, "stats": true, "--help": true}

// commands returns the sockreap-hook command lines of README.md's code
// blocks (indented or fenced), without sudo and trailing comments.
func commands(t *testing.T) []string {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	fenced := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced && !strings.HasPrefix(line, "    ") {
			continue
		}
		cmd := strings.TrimSpace(line)
		if i := strings.Index(cmd, "  #"); i >= 0 {
			cmd = strings.TrimSpace(cmd[:i])
		}
		cmd = strings.TrimPrefix(cmd, "sudo ")
		if strings.HasPrefix(cmd, "./bin/sockreap-hook ") || strings.HasPrefix(cmd, "sockreap-hook ") {
			out = append(out, cmd)
		}
	}
	return out
}

func TestMain(m *testing.M) { testbin.Main(m, "sockreap-hook") }

func TestReadmeCommands(t *testing.T) {
	nettest.RequireRoot(t)
	bin := testbin.Path("sockreap-hook")
	// NAME in the README is a namespace with a stuck orphan in it.
	x, p := nettest.NewNetns(t), nettest.NewNetns(t)
	l := nettest.Connect(t, x, p)
	lst := p.Listen(t, netip.AddrPortFrom(l.B4, 9300), 4, 4096)
	c := x.Dial(t, netip.AddrPortFrom(l.B4, 9300))
	nettest.Accept(t, lst)
	nettest.Fill(t, c)
	c.Close()

	metricsDir := t.TempDir()
	ran := 0
	for _, line := range commands(t) {
		fields := strings.Fields(line)
		if len(fields) < 2 || !readOnly[fields[1]] {
			continue
		}
		args := fields[1:]
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "/var/run/netns/NAME", x.Path)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SOCKREAP_STATE_DIR="+t.TempDir(), "SOCKREAP_LOG="+filepath.Join(t.TempDir(), "hook.log"),
			"SOCKREAP_METRICS_DIR="+metricsDir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("README command %q: %v\n%s", line, err, out)
			continue
		}
		ran++
	}
	if ran < 4 {
		t.Errorf("ran %d README commands; the README shows fewer than expected", ran)
	}
	if ss := x.SS(t); len(ss) != 0 {
		t.Errorf("README's drain left sockets:\n%s", strings.Join(ss, "\n"))
	}
}

// TestDemo runs `make demo`'s script: it exits non-zero unless an orphan
// keeps a plain namespace and a runc container's namespace alive without
// sockreap, and both go at once with it.
func TestDemo(t *testing.T) {
	nettest.RequireRoot(t)
	for _, tool := range []string{"runc", "busybox", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps)", tool)
		}
	}
	bin := testbin.Path("sockreap-hook")
	cmd := exec.Command("scripts/demo.sh")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "HOOK="+bin, "LINGER_WAIT=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	for _, want := range []string{"still alive after 3 s", "runc container, with hooks:", "namespace died"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
