package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/pin"
	"golang.org/x/sys/unix"
)

func TestPinsAndGC(t *testing.T) {
	nettest.RequireRoot(t)
	h := newHookEnv(t)
	store := pin.Store{Dir: h.stateDir}

	// gone: runtime state removed, no process, an orphan inside.
	gone := nettest.NewNetns(t)
	peer := nettest.NewNetns(t)
	link := nettest.Connect(t, gone, peer)
	ap := netip.AddrPortFrom(link.B4, 7003)
	peer.Listen(t, ap, 8, 4096)
	c := gone.Dial(t, ap)
	nettest.Fill(t, c)
	c.Close()
	if _, err := store.Pin(gone.Path, pin.Meta{ID: "gone", RuntimeState: filepath.Join(t.TempDir(), "removed")}); err != nil {
		t.Fatal(err)
	}
	// known: the runtime still has it.
	known := nettest.NewNetns(t)
	if _, err := store.Pin(known.Path, pin.Meta{ID: "known", RuntimeState: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	// busy: a process inside.
	busy := nettest.NewNetns(t)
	sleeper := busy.Start(t, "sleep", "300")
	if _, err := store.Pin(busy.Path, pin.Meta{ID: "busy", PID: sleeper.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	// stale: no longer a mount.
	stale := nettest.NewNetns(t)
	if _, err := store.Pin(stale.Path, pin.Meta{ID: "stale"}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(store.Path("stale"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	if code := Main([]string{"pins", "--state-dir", h.stateDir, "--json"}, env); code != ExitOK {
		t.Fatalf("pins: exit %d: %s", code, errb.String())
	}
	var infos []pinInfo
	if err := json.Unmarshal(out.Bytes(), &infos); err != nil || len(infos) != 4 {
		t.Fatalf("pins --json: %v, %s", err, out.String())
	}
	byID := map[string]pinInfo{}
	for _, pi := range infos {
		byID[pi.Container] = pi
	}
	if b := byID["busy"]; len(b.Processes) != 1 || b.Processes[0].PID != sleeper.Process.Pid || b.Netns != busy.NS.ID.String() {
		t.Errorf("pins: busy = %+v", b)
	}
	if byID["stale"].Mounted {
		t.Error("pins: stale shown mounted")
	}
	out.Reset()
	if code := Main([]string{"pins", "--state-dir", h.stateDir}, env); code != ExitOK || !strings.Contains(out.String(), "CONTAINER") || !strings.Contains(out.String(), "sleep") {
		t.Errorf("pins table: %q", out.String())
	}

	// A dry run changes nothing.
	out.Reset()
	if code := Main([]string{"gc", "--state-dir", h.stateDir, "--log", h.logFile, "--metrics-dir", filepath.Join(h.stateDir, "no-metrics"), "--dry-run"}, env); code != ExitOK {
		t.Fatalf("gc --dry-run: exit %d: %s", code, errb.String())
	}
	if ps, _ := store.List(); len(ps) != 4 {
		t.Fatalf("gc --dry-run released pins: %d left", len(ps))
	}

	out.Reset()
	if code := Main([]string{"gc", "--state-dir", h.stateDir, "--log", h.logFile, "--metrics-dir", filepath.Join(h.stateDir, "no-metrics"), "--json"}, env); code != ExitOK {
		t.Fatalf("gc: exit %d: %s\n%s", code, errb.String(), out.String())
	}
	var results []gcResult
	if err := json.Unmarshal(out.Bytes(), &results); err != nil {
		t.Fatalf("gc --json: %v: %s", err, out.String())
	}
	want := map[string]string{"gone": "released", "known": "kept", "busy": "kept", "stale": "released"}
	for _, r := range results {
		if want[r.Container] != r.Action {
			t.Errorf("gc %s: %s (%s), want %s", r.Container, r.Action, r.Reason, want[r.Container])
		}
		if r.Container == "gone" && (r.Report == nil || r.Report.Found < 1 || r.Report.Remaining != 0) {
			t.Errorf("gc drained gone: %+v", r.Report)
		}
	}
	if got := gone.SS(t); len(got) != 0 {
		t.Errorf("orphan left in the gone namespace: %q", got)
	}
	ps, _ := store.List()
	if len(ps) != 2 {
		t.Errorf("%d pins left after gc, want 2 (known, busy)", len(ps))
	}
	if _, err := os.Stat(store.Path("gone")); !os.IsNotExist(err) {
		t.Errorf("gone pin file still there: %v", err)
	}
}
