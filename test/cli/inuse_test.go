package cli_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
)

// A process whose worker thread entered the namespace (its leader stays
// outside) is a live user of it: drain refuses without --force.
func TestDrainRefusesThreadInside(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	h := nettest.StartHelper(t, nil, nettest.ThreadListener, x.Path, "127.0.0.1:9401")
	r := run(t, "drain", "--netns", x.Path)
	if r.code != exitUsage {
		t.Errorf("drain with a thread inside: exit %d, want %d", r.code, exitUsage)
	}
	oneLine(t, r, "refusing", "live process", "--force")
	if !strings.Contains(r.stderr, "("+strconv.Itoa(h.PID)+" ") {
		t.Errorf("refusal does not name the helper %d: %s", h.PID, r.stderr)
	}
	if ss := x.SS(t); len(ss) != 1 || !strings.Contains(ss[0], "LISTEN") {
		t.Fatalf("ss after the refused drain: %q, want the thread's listener", ss)
	}
	if r := run(t, "drain", "--netns", x.Path, "--force", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"destroyed":1`) {
		t.Errorf("drain --force: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	for _, l := range x.SS(t) {
		if strings.Contains(l, "LISTEN") {
			t.Errorf("listener still listening after drain --force: %q", l)
		}
	}
}

// A process outside the namespace that made a socket inside it (setns in,
// socket, setns back) keeps its socket; the rest is drained.
func TestDrainKeepsSocketHeldOutside(t *testing.T) {
	nettest.RequireRoot(t)
	x, _, _ := orphanNetns(t)
	nettest.StartHelper(t, nil, nettest.OutsideHolder, x.Path, "127.0.0.1:9402")
	r := run(t, "drain", "--netns", x.Path, "--json", "--orphans", "destroy")
	var rep struct {
		Found, Destroyed, Held, Remaining int
		Left                              []struct{ Owner string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("drain: exit %d, %v: %s %s", r.code, err, r.stdout, r.stderr)
	}
	if rep.Found != 3 || rep.Destroyed != 2 || rep.Held != 1 || len(rep.Left) != 1 || rep.Left[0].Owner != "held" {
		t.Errorf("drain report %s, want the 2 orphans destroyed and the listener held", r.stdout)
	}
	if r.code != 1 {
		t.Errorf("drain exit %d, want 1: a socket remains", r.code)
	}
	ss := x.SS(t)
	if len(ss) != 1 || !strings.Contains(ss[0], "127.0.0.1:9402") || !strings.Contains(ss[0], "LISTEN") {
		t.Errorf("ss after the drain: %q, want only the held listener", ss)
	}
	if text := run(t, "drain", "--netns", x.Path); !strings.Contains(text.stdout, "kept 1 sockets that processes outside the namespace hold") {
		t.Errorf("text report: %q", text.stdout)
	}
}
