package metrics_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/promtest"
	"github.com/sockreap/sockreap/internal/reap"
)

// A child process of the concurrency tests: records one event (or, with
// SOCKREAP_TEST_HANG, marks itself at work and waits to be killed).
func TestMain(m *testing.M) {
	if dir := os.Getenv("SOCKREAP_TEST_RECORD"); dir != "" {
		t, err := metrics.OpenTextfile(dir)
		if err == nil {
			t.Begin("poststop")
			if os.Getenv("SOCKREAP_TEST_HANG") != "" {
				os.Stdout.WriteString("ready\n")
				time.Sleep(time.Hour)
			}
			err = t.Record(orphanDrained())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// orphanDrained is a poststop that found an orphan and a kernel socket,
// destroyed the orphan and left the kernel's listener.
func orphanDrained() metrics.DrainEvent {
	return metrics.DrainEvent{
		Frontend: metrics.FrontendHook, Stage: "poststop", Outcome: "drained",
		StageDuration: 3 * time.Millisecond,
		Report: &reap.Report{
			Found: 2, Destroyed: 1, Remaining: 1, DurationUS: 1500,
			FoundBy: []reap.Group{
				{Protocol: "tcp", State: "FIN-WAIT-1", Owner: reap.OwnerOrphan, Count: 1},
				{Protocol: "tcp", State: "LISTEN", Owner: reap.OwnerKernel, Count: 1},
			},
			DestroyedBy: []reap.Group{{Protocol: "tcp", State: "FIN-WAIT-1", Owner: reap.OwnerOrphan, Count: 1}},
			Left:        []reap.Group{{Protocol: "tcp", State: "LISTEN", Owner: reap.OwnerKernel, Count: 1}},
		},
	}
}

func parse(t *testing.T, b []byte) promtest.Families {
	t.Helper()
	f, err := promtest.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b)
	}
	return f
}

func want(t *testing.T, f promtest.Families, name string, labels map[string]string, v float64) {
	t.Helper()
	got, ok := f.Value(name, labels)
	if !ok || got != v {
		t.Errorf("%s%v = %v (present %v), want %v; series:\n%s", name, labels, got, ok, v, f.Series(name))
	}
}

func TestExposition(t *testing.T) {
	r := metrics.NewRecorder()
	r.Record(orphanDrained())
	spared := orphanDrained()
	spared.Report.Spared = 1
	spared.Report.DestroyedBy = nil
	spared.Report.Left = append(spared.Report.Left, reap.Group{Protocol: "tcp", State: "FIN-WAIT-2", Owner: reap.OwnerOrphan, Count: 1})
	r.Record(spared)
	r.Record(metrics.DrainEvent{Frontend: metrics.FrontendHook, Stage: "poststop", Outcome: "skipped-shared"})
	r.Record(metrics.DrainEvent{Frontend: metrics.FrontendHook, Stage: "createRuntime", Outcome: "failed", Failed: true})
	r.Record(metrics.DrainEvent{Frontend: metrics.FrontendGC, Outcome: "drained", Released: true, Report: &reap.Report{}})
	r.Record(metrics.DrainEvent{Frontend: metrics.FrontendGC, Outcome: "released", Released: true})
	r.SetGauges(metrics.Gauges{Pins: metrics.Int(3), PinsStale: metrics.Int(1), DyingNetns: metrics.Int(2), DyingNetnsUpper: metrics.Int(5),
		Kernel: &reap.Capabilities{Kernel: `6.18 "x"`, Destroy: true, TCP: true, OrphanSafe: true}})
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	f := parse(t, b.Bytes())
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "drained"}, 2)
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "skipped-shared"}, 1)
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "killed"}, 0) // initialised
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "gc", "outcome": "drained"}, 1)
	if _, ok := f.Value(metrics.NameDrains, map[string]string{"frontend": "gc", "outcome": "released"}); ok {
		t.Errorf("a pin gc released without a drain counted as a drain:\n%s", f.Series(metrics.NameDrains))
	}
	want(t, f, metrics.NameGCReleases, map[string]string{}, 2)
	want(t, f, metrics.NameHookFailures, map[string]string{"stage": "createRuntime"}, 1)
	want(t, f, metrics.NameHookFailures, map[string]string{"stage": "poststop"}, 0)
	want(t, f, metrics.NameSockets, map[string]string{"action": "found", "protocol": "tcp", "state": "closing", "owner": "orphan"}, 2)
	want(t, f, metrics.NameSockets, map[string]string{"action": "destroyed", "protocol": "tcp", "state": "closing", "owner": "orphan"}, 1)
	want(t, f, metrics.NameSockets, map[string]string{"action": "spared", "protocol": "tcp", "state": "closing", "owner": "orphan"}, 1)
	want(t, f, metrics.NameSockets, map[string]string{"action": "remaining", "protocol": "tcp", "state": "listen", "owner": "kernel"}, 2)
	want(t, f, metrics.NameDrainDuration, map[string]string{"frontend": "hook"}, 2)
	want(t, f, metrics.NameStageDuration, map[string]string{"stage": "poststop"}, 3)
	want(t, f, metrics.NamePins, map[string]string{}, 3)
	want(t, f, metrics.NamePinsStale, map[string]string{}, 1)
	want(t, f, metrics.NameDyingNetns, map[string]string{"bound": "lower"}, 2)
	want(t, f, metrics.NameDyingNetns, map[string]string{"bound": "upper"}, 5)
	want(t, f, metrics.NameKernelInfo, map[string]string{"kernel": `6.18 "x"`, "destroy": "yes", "tcp": "yes", "listen": "no",
		"time_wait": "no", "udp": "no", "orphans_freed": "yes"}, 1)
	// The 1.5 ms drains fall in the le=0.0025 bucket, not le=0.001.
	var h *dto.Histogram
	for _, m := range f[metrics.NameDrainDuration].Metric {
		if m.Label[0].GetValue() == "hook" {
			h = m.Histogram
		}
	}
	for _, bk := range h.GetBucket() {
		wantN := uint64(0)
		if bk.GetUpperBound() >= 0.0025 {
			wantN = 2
		}
		if bk.GetCumulativeCount() != wantN {
			t.Errorf("bucket le=%g: %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), wantN)
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(line, "#") && strings.Contains(line, "container") {
			t.Errorf("a container label or id in the exposition: %s", line)
		}
	}
}

func TestOpenMissingDirIsQuiet(t *testing.T) {
	s := metrics.Open(filepath.Join(t.TempDir(), "no-node-exporter"))
	if _, ok := s.(metrics.Nop); !ok {
		t.Fatalf("Open of a missing directory = %T, want Nop", s)
	}
	if err := s.Record(orphanDrained()); err != nil {
		t.Fatal(err)
	}
}

// Fifty hook processes recording at once lose no increment, and the
// exposition node_exporter reads is whole after each of them.
func TestTextfileConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "SOCKREAP_TEST_RECORD="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("child: %v: %s", err, out)
			}
		}()
	}
	// Meanwhile the exposition always parses.
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		var seen float64
		for {
			select {
			case <-stop:
				return
			default:
			}
			if b, err := os.ReadFile(filepath.Join(dir, metrics.PromFile)); err == nil {
				f, err := promtest.Parse(bytes.NewReader(b))
				if err != nil {
					errs <- fmt.Errorf("a reader saw a broken exposition: %v", err)
					return
				}
				// Counters never go back: a scrape would take that
				// for a reset.
				v, _ := f.Value(metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "drained"})
				if v < seen {
					errs <- fmt.Errorf("the exposition went back from %v to %v drains", seen, v)
					return
				}
				seen = v
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, metrics.PromFile))
	if err != nil {
		t.Fatal(err)
	}
	f := parse(t, b)
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "drained"}, n)
	want(t, f, metrics.NameHookRuns, map[string]string{"stage": "poststop", "outcome": "drained"}, n)
	want(t, f, metrics.NameSockets, map[string]string{"action": "destroyed", "protocol": "tcp", "state": "closing", "owner": "orphan"}, n)
	want(t, f, metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "killed"}, 0)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// A hook killed while at work (a runtime kills it at its OCI timeout) is
// counted by the next writer as killed, once.
func TestKilledHookCounted(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SOCKREAP_TEST_RECORD="+dir, "SOCKREAP_TEST_HANG=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	// At work: not counted.
	r, err := metrics.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Drains["hook|killed"]; n != 0 {
		t.Fatalf("a hook still at work counted as killed (%d)", n)
	}
	// Runtimes kill hooks at an OCI timeout of whole seconds: writers
	// take a hook younger than a second for one at work without looking.
	time.Sleep(1100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for range 2 {
		if r, err = metrics.Load(dir); err != nil {
			t.Fatal(err)
		}
	}
	if r.Drains["hook|killed"] != 1 || r.HookFailures["poststop"] != 1 || r.HookRuns["poststop|killed"] != 1 {
		t.Errorf("killed hook: drains %v, failures %v, runs %v; want it counted once", r.Drains, r.HookFailures, r.HookRuns)
	}
	var b bytes.Buffer
	if err := metrics.Stats(dir, &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "killed") {
		t.Errorf("stats does not show the killed hook:\n%s", b.String())
	}
}

// BenchmarkTextfileRecord is what a hook pays for its metrics: lock,
// read, add, render, two renames (and the running marker).
func BenchmarkTextfileRecord(b *testing.B) {
	dir := b.TempDir()
	t, err := metrics.OpenTextfile(dir)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		t.Begin("poststop")
		if err := t.Record(orphanDrained()); err != nil {
			b.Fatal(err)
		}
	}
}

// A directory others may write, or a symlink to one, is refused: sockreap
// writes there as root.
func TestOpenTextfileRefusesUnsafeDirs(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := metrics.OpenTextfile(open); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("world-writable directory: %v", err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.OpenTextfile(link); err == nil {
		t.Error("a symlink to a directory was accepted")
	}
	if _, err := metrics.OpenTextfile(filepath.Join(base, "none")); !errors.Is(err, metrics.ErrNoDir) {
		t.Errorf("missing directory: %v, want ErrNoDir", err)
	}
}

// A writer with a bounded wait gives up on a lock held past it: its run
// goes uncounted, is not taken for a killed hook, and the next writer
// counts normally.
func TestLockWaitGivesUp(t *testing.T) {
	dir := t.TempDir()
	w, err := metrics.OpenTextfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(orphanDrained()); err != nil { // creates the state
		t.Fatal(err)
	}
	held, err := os.OpenFile(filepath.Join(dir, metrics.StateFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w.Begin("poststop")
	w.LockWait = 50 * time.Millisecond
	if err := w.Record(orphanDrained()); err == nil || !strings.Contains(err.Error(), "not counted") {
		t.Errorf("Record with the lock held elsewhere: %v, want it to give up", err)
	}
	held.Close()
	r, err := metrics.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, k := r.Drains["hook|drained"], r.Drains["hook|killed"]; n != 1 || k != 0 {
		t.Errorf("after one counted run and one given up: drained %d, killed %d; want 1 and 0", n, k)
	}
}

// The state survives a round trip through its file, every field of it.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := metrics.OpenTextfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.RunDir = filepath.Join(dir, "run dir") // a space, quoted
	ev := orphanDrained()
	if err := w.Update(func(r *metrics.Recorder) {
		r.Record(ev)
		r.Record(metrics.DrainEvent{Frontend: metrics.FrontendGC, Outcome: "drained", Released: true, Report: &reap.Report{DurationUS: 10}})
		r.SetGauges(metrics.Gauges{Pins: metrics.Int(7), PinsStale: metrics.Int(0), DyingNetns: metrics.Int(1), DyingNetnsUpper: metrics.Int(9),
			Kernel: &reap.Capabilities{Kernel: `6.18.0 "odd"`, Destroy: true, UDP: true, OrphanSafe: true}})
		now := time.Unix(1796300000, 0)
		r.SetGauges(metrics.Gauges{GCRun: &now})
	}); err != nil {
		t.Fatal(err)
	}
	want := &bytes.Buffer{}
	r1, err := metrics.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r1.WriteText(want)
	r2, err := metrics.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := &bytes.Buffer{}
	r2.WriteText(got)
	if got.String() != want.String() || !strings.Contains(got.String(), `kernel="6.18.0 \"odd\""`) || !strings.Contains(got.String(), "sockreap_pins 7") ||
		!strings.Contains(got.String(), "sockreap_gc_last_run_timestamp_seconds 1.7963e+09") {
		t.Errorf("state lost something on the way:\n%s\n---\n%s", want, got)
	}
	if len(r2.RunDirs) != 1 || r2.RunDirs[0] != w.RunDir {
		t.Errorf("run dirs %q", r2.RunDirs)
	}
	// A damaged state restarts the counters (a counter reset to Prometheus).
	os.WriteFile(filepath.Join(dir, metrics.StateFile), []byte("garbage"), 0o644)
	r3, err := metrics.Load(dir)
	if err != nil || r3.Drains["hook|drained"] != 0 {
		t.Errorf("damaged state: %v, %v", err, r3.Drains)
	}
}

// A state that is lost or damaged restarts the counters, and the
// exposition follows at once (a counter reset to Prometheus), not once the
// new counts pass the old ones.
func TestStateLostPublishesAtOnce(t *testing.T) {
	dir := t.TempDir()
	w, err := metrics.OpenTextfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := w.Record(orphanDrained()); err != nil {
			t.Fatal(err)
		}
	}
	for _, damage := range []func(){
		func() { os.Remove(filepath.Join(dir, metrics.StateFile)) },
		func() {
			os.WriteFile(filepath.Join(dir, metrics.StateFile), []byte("00000000000000000099\n{\"old\":1}"), 0o644)
		},
	} {
		damage()
		if err := w.Record(orphanDrained()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, metrics.PromFile))
		if err != nil {
			t.Fatal(err)
		}
		want(t, parse(t, b), metrics.NameDrains, map[string]string{"frontend": "hook", "outcome": "drained"}, 1)
	}
}
