package critest

import (
	"bufio"
	"encoding/json"
	"os"
	"strconv"
	"strings"
)

// Mode is one way of running pods: an engine, the runtime handler pods
// ask for, and what (if anything) drains their namespaces.
type Mode struct {
	Name    string
	Engine  *Engine
	Handler string // runtime handler (RuntimeClass) of the pods; "" the default
	// Drains: the pod's namespace must be freed right after crictl stopp;
	// otherwise an orphan keeps it for minutes.
	Drains bool
	// Unsupported says why the mode cannot run anywhere ("" runs).
	Unsupported string
	// Prepare writes the operator's config file and whatever the mode
	// needs before containerd starts (d.Start then overlays the rig's
	// settings). Nil leaves no file: containerd's defaults.
	Prepare func(t T, d *Daemon)
	// Check asserts, after pod p was stopped and removed, what the mode's
	// drainer logged about it: drained says whether the namespace was to
	// be drained (false: the pod had none of its own). Nil checks nothing.
	Check func(t T, d *Daemon, p *Pod, drained bool)
}

// Skip says why m cannot run here, or "".
func (m *Mode) Skip() string {
	if m.Unsupported != "" {
		return m.Unsupported
	}
	if r := Missing(); r != "" {
		return r
	}
	return m.Engine.Missing()
}

// Bins are the project's commands the modes run.
type Bins struct {
	Hook string // sockreap-hook
	Shim string // sockreap-shim
	NRI  string // sockreap-nri
}

// Modes returns the modes every scenario runs in: the sockreap runtime
// handler on both engines, plain runc as the baseline, and sockreap's NRI
// plugin on containerd 2.2 with plain runc (daemon, pre-registered,
// DaemonSet; see NRIModes).
func Modes(b Bins) []*Mode {
	return append([]*Mode{HandlerMode(Containerd16, b), HandlerMode(Containerd22, b), RuncMode(Containerd16)}, NRIModes(b)...)
}

// HandlerMode runs pods with the sockreap runtime handler, configured by
// `sockreap-hook configure containerd` on a new file.
func HandlerMode(e *Engine, b Bins) *Mode {
	return &Mode{
		Name: e.Name + "+sockreap", Engine: e, Handler: "sockreap", Drains: true,
		Prepare: func(t T, d *Daemon) {
			t.Helper()
			must(t, b.Hook, "configure", "containerd", "--config", d.Config, "--shim", b.Shim, "--config-version", strconv.Itoa(e.ConfigVersion))
		},
		Check: CheckHookLog,
	}
}

// RuncMode runs pods with containerd's defaults: plain runc, nothing
// drains.
func RuncMode(e *Engine) *Mode {
	return &Mode{Name: e.Name + "+runc", Engine: e}
}

// HookRecord is one line of the hook log.
type HookRecord struct {
	Level, Msg, Stage, Container string
	Action                       string // lifecycle.Action: drained, skipped-shared, ...
	Warnings                     []string
	Error                        string
	Line                         string `json:"-"`
}

// HookRecords returns the hook log's records about the given containers
// (all records when none is given).
func (d *Daemon) HookRecords(t T, ids ...string) []HookRecord {
	t.Helper()
	f, err := os.Open(d.HookLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var recs []HookRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r HookRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("hook log %s: %v: %s", d.HookLog, err, sc.Text())
		}
		r.Line = sc.Text()
		if len(want) == 0 || want[r.Container] {
			recs = append(recs, r)
		}
	}
	return recs
}

// CheckHookLog checks the hook log of the sockreap runtime handler about
// pod p: every container of the pod (the pause container has the pod's
// id) went through poststop without an error, the pause container without
// createRuntime (containerd names the pod's namespace mount; app containers
// join by /proc path and are pinned), and one poststop drained the
// namespace exactly when drained.
func CheckHookLog(t T, d *Daemon, p *Pod, drained bool) {
	t.Helper()
	ids := append([]string{p.ID}, p.Containers...)
	recs := d.HookRecords(t, ids...)
	var lines []string
	stages := map[string]map[string]bool{}
	drains := 0
	for _, r := range recs {
		lines = append(lines, r.Line)
		if stages[r.Container] == nil {
			stages[r.Container] = map[string]bool{}
		}
		stages[r.Container][r.Stage] = true
		if r.Level == "ERROR" {
			t.Errorf("hook error for %s at %s: %s", r.Container, r.Stage, r.Error)
		}
		if r.Stage == "poststop" && r.Action == "drained" {
			drains++
		}
		if r.Container == p.ID && r.Stage == "createRuntime" {
			// containerd names the pod's namespace mount in the pause
			// container's config.json and keeps it past that
			// container's delete: the shim adds no createRuntime. (App
			// containers join by /proc/PID/ns/net and are pinned.)
			t.Errorf("createRuntime ran for the pause container although containerd names its namespace mount: %s", r.Line)
		}
	}
	for _, id := range ids {
		if !stages[id]["poststop"] {
			t.Errorf("hook log has stages %v for container %s, want poststop", stages[id], id)
		}
	}
	want := 0
	if drained {
		want = 1
	}
	if drains != want {
		t.Errorf("the pod's namespace was drained %d times, want %d", drains, want)
	}
	if t.Failed() {
		t.Logf("hook log about pod %s:\n%s", p.ID, strings.Join(lines, "\n"))
	}
}
