package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"golang.org/x/sys/unix"
)

// The fakes below stand in for the kernel, the pin store and the runtime,
// so the decision table runs without root. Namespaces are identities only;
// Open hands out a real handle (of the test's own namespace, which needs no
// privilege) carrying the fake identity, and only the fake drainer sees it.

var (
	hostNS  = netns.ID{Dev: 4, Ino: 4026531833}
	selfNS  = hostNS // a hook runs in the host's namespace
	ctrNS   = netns.ID{Dev: 4, Ino: 4026532100}
	otherNS = netns.ID{Dev: 4, Ino: 4026532200}
)

type fakePins struct {
	pins    map[string]*pin.Pin
	getErr  error // returned by Get instead of the pin
	lockErr error
	locked  map[string]bool
	ns      *fakeNamespaces
}

func (f *fakePins) Lock(id string, wait bool) (func(), error) {
	if f.lockErr != nil {
		return nil, f.lockErr
	}
	if f.locked[id] {
		return nil, fmt.Errorf("lock pin of container %s: %w", id, unix.EWOULDBLOCK)
	}
	return func() {}, nil
}

func (f *fakePins) Path(id string) string { return "/run/sockreap/pins/" + id }

func (f *fakePins) PinNS(ns *netns.NS, m pin.Meta) (*pin.Pin, error) {
	id := ns.ID
	key := m.Key
	if key == "" {
		key = m.ID
	}
	if p, ok := f.pins[key]; ok && p.Mounted {
		if p.NS == id {
			return p, nil
		}
		return nil, &pin.ErrOtherNetns{Existing: p}
	}
	p := &pin.Pin{ID: key, Path: f.Path(key), Mounted: true, NS: id, Meta: &m}
	f.pins[key] = p
	f.ns.paths[p.Path] = id
	return p, nil
}

func (f *fakePins) Get(id string) (*pin.Pin, error) {
	if f.getErr != nil {
		return nil, f.getErr
	}
	p, ok := f.pins[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, pin.ErrNoPin)
	}
	return p, nil
}

func (f *fakePins) Has(id string) bool { _, ok := f.pins[id]; return ok }

func (f *fakePins) List() ([]*pin.Pin, error) {
	var out []*pin.Pin
	for _, p := range f.pins {
		out = append(out, p)
	}
	return out, nil
}

func (f *fakePins) Release(id string) (bool, error) {
	_, ok := f.pins[id]
	delete(f.pins, id)
	return ok, nil
}

type fakeNamespaces struct {
	paths        map[string]netns.ID
	hostVerified bool
}

func (f *fakeNamespaces) IDOf(path string) (netns.ID, error) {
	id, ok := f.paths[path]
	if !ok {
		return netns.ID{}, fmt.Errorf("%s: %w", path, netns.ErrNotNetns)
	}
	return id, nil
}

func (f *fakeNamespaces) Classify(path string) oci.NetnsPath {
	if strings.HasPrefix(path, "/proc/") {
		return oci.NetnsPath{Kind: oci.NetnsProc, Resolved: path}
	}
	if _, ok := f.paths[path]; ok {
		return oci.NetnsPath{Kind: oci.NetnsNsfs, Resolved: path}
	}
	return oci.NetnsPath{Kind: oci.NetnsGone, Resolved: path}
}

func (f *fakeNamespaces) Open(path string) (*netns.NS, error) {
	id, err := f.IDOf(path)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	ns.Path, ns.ID = path, id
	return ns, nil
}

func (f *fakeNamespaces) IsHost(id netns.ID) (bool, bool) {
	return f.hostVerified && id == hostNS, f.hostVerified
}
func (f *fakeNamespaces) Self() (netns.ID, error) { return selfNS, nil }

type fakeOccupancy struct {
	procs map[netns.ID][]netns.Proc
	keep  func(uint64) bool
	empty bool
	hints []Hint
}

func (f *fakeOccupancy) InUse(_ context.Context, ns *netns.NS, h Hint) (Occupants, error) {
	f.hints = append(f.hints, h)
	return Occupants{Procs: f.procs[ns.ID], Keep: f.keep, Checked: "checked", Empty: f.empty}, nil
}

type fakeDrainer struct {
	drained []netns.ID
	keep    []bool // whether each drain got a Keep
	err     error
}

func (f *fakeDrainer) Drain(_ context.Context, ns *netns.NS, opts reap.Options) (*reap.Report, error) {
	f.drained = append(f.drained, ns.ID)
	f.keep = append(f.keep, opts.Keep != nil)
	return &reap.Report{Netns: ns.ID.String(), Found: 3, Destroyed: 3}, f.err
}

type fakeBundles struct {
	configs map[string]*oci.Config
	hooked  bool
}

func (f *fakeBundles) ReadConfig(bundle string) (*oci.Config, error) {
	c, ok := f.configs[bundle]
	if !ok {
		return nil, fmt.Errorf("read bundle config %s/config.json: %w", bundle, os.ErrNotExist)
	}
	return c, nil
}
func (f *fakeBundles) HasHook(string, Stage) (bool, error) { return f.hooked, nil }

type fakeContainers struct {
	gone bool
	why  string
	root string
}

func (fakeContainers) RuntimeState(string) string { return "" }
func (f fakeContainers) Root() string             { return f.root }
func (f fakeContainers) Gone(*pin.Pin, time.Duration, time.Time) (bool, string) {
	return f.gone, f.why
}

type world struct {
	*Core
	pins    *fakePins
	ns      *fakeNamespaces
	occ     *fakeOccupancy
	drainer *fakeDrainer
	bundles *fakeBundles
}

func newWorld() *world {
	ns := &fakeNamespaces{hostVerified: true, paths: map[string]netns.ID{
		"/proc/100/ns/net":          ctrNS,
		"/proc/200/ns/net":          otherNS,
		"/proc/1/ns/net":            hostNS,
		"/var/run/netns/cni-1":      ctrNS,
		"/var/run/docker/netns/abc": ctrNS,
	}}
	w := &world{
		pins:    &fakePins{pins: map[string]*pin.Pin{}, locked: map[string]bool{}, ns: ns},
		ns:      ns,
		occ:     &fakeOccupancy{procs: map[netns.ID][]netns.Proc{}},
		drainer: &fakeDrainer{},
		bundles: &fakeBundles{configs: map[string]*oci.Config{"/b": {HasNetns: true}}},
	}
	w.Core = &Core{Pins: w.pins, Namespaces: ns, Occupancy: w.occ, Drainer: w.drainer, Bundles: w.bundles,
		Containers: fakeContainers{gone: true, why: "container gone"}}
	return w
}

func st(id string, pid int, ann map[string]string) *specs.State {
	return &specs.State{ID: id, Pid: pid, Bundle: "/b", Annotations: ann}
}

var ctx = context.Background()

func (w *world) pinned(t *testing.T, id string, pid int) {
	t.Helper()
	if o := w.CreateRuntime(ctx, st(id, pid, nil)); o.Action != Pinned {
		t.Fatalf("createRuntime: %+v", o)
	}
}

// TestCreateRuntimeNoPinNeeded: where config.json names the namespace
// mount the engine keeps, or gives the container no namespace, the stage
// returns before it opens a namespace or takes a lock; where the runtime
// makes the namespace, the path names a process, or the engine removes the
// mount before poststop (podman), it pins.
func TestCreateRuntimeNoPinNeeded(t *testing.T) {
	podman := map[string]string{oci.AnnotationManager: "libpod"}
	for _, tc := range []struct {
		name string
		cfg  *oci.Config
		pin  bool
	}{
		{"CNI path", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1"}, false},
		{"no network namespace", &oci.Config{}, false},
		{"runtime makes it", &oci.Config{HasNetns: true}, true},
		{"path by process", &oci.Config{HasNetns: true, NetnsPath: "/proc/100/ns/net"}, true},
		{"path gone", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/gone"}, true},
		{"podman removes it first", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1", Annotations: podman}, true},
		{"CRI-O removes it first", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1", Annotations: map[string]string{oci.AnnotationManager: "cri-o"}}, true},
		{"containerd CRI keeps it", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1", Annotations: map[string]string{"io.kubernetes.cri.container-type": "sandbox"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.bundles.configs["/b"] = tc.cfg
			o := w.CreateRuntime(ctx, st("c", 100, nil))
			_, pinned := w.pins.pins["c"]
			if pinned != tc.pin {
				t.Fatalf("pinned %v, want %v: %+v", pinned, tc.pin, o)
			}
			if !tc.pin && (o.Action != NothingToDo || !strings.Contains(o.Reason, "no pin needed") || o.Netns != "" || len(w.pins.locked) != 0) {
				t.Errorf("outcome %+v, locks %v: want nothing-to-do before any namespace or lock", o, w.pins.locked)
			}
		})
	}
}

func TestCreateRuntime(t *testing.T) {
	optOut := map[string]string{oci.AnnotationDrain: "false"}
	for _, tc := range []struct {
		name   string
		state  *specs.State
		action Action
		want   string // in the reason or error
	}{
		{"pins", st("c", 100, nil), Pinned, ""},
		{"opted out", st("c", 100, optOut), OptedOut, "io.sockreap.drain"},
		{"no pid", st("c", 0, nil), Failed, "has no pid"},
		{"process gone", st("c", 999, nil), Failed, "/proc/999/ns/net"},
		{"host network", st("c", 1, nil), NothingToDrain, "is the host's network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			o := w.CreateRuntime(ctx, tc.state)
			if o.Action != tc.action || o.Container != "c" {
				t.Fatalf("outcome %+v, want %s", o, tc.action)
			}
			if got := o.Reason + fmt.Sprint(o.Err); !strings.Contains(got, tc.want) {
				t.Errorf("reason/error %q does not say %q", got, tc.want)
			}
			_, has := w.pins.pins["c"]
			if has != (tc.action == Pinned) {
				t.Errorf("pin made: %v, want %v", has, tc.action == Pinned)
			}
			if tc.action == Pinned && (o.Pin != w.pins.Path("c") || o.Netns != ctrNS.String()) {
				t.Errorf("pinned outcome %+v", o)
			}
		})
	}
}

// The host's namespace is named so even when it is also sockreap's own.
func TestHostNamespaceNamedAsHost(t *testing.T) {
	w := newWorld()
	o := w.CreateRuntime(ctx, st("c", 1, nil))
	if !strings.Contains(o.Reason, "host's") || strings.Contains(o.Reason, "own") {
		t.Errorf("reason %q, want the host's network namespace", o.Reason)
	}
}

// An opt-out only config.json has (not copied into the state) is honoured
// at createRuntime: no pin, and poststop (reading config.json, as there is
// no pin) leaves the namespace alone.
func TestCreateRuntimeOptedOutInConfig(t *testing.T) {
	w := newWorld()
	w.bundles.configs["/b"].Annotations = map[string]string{oci.AnnotationDrain: "false"}
	if o := w.CreateRuntime(ctx, st("c", 100, nil)); o.Action != OptedOut || len(w.pins.pins) != 0 {
		t.Fatalf("createRuntime: %+v, pins %v; want opted out, no pin", o, w.pins.pins)
	}
	if o := w.Poststop(ctx, st("c", 0, nil)); o.Action != OptedOut || len(w.drainer.drained) != 0 {
		t.Errorf("poststop: %+v, drained %v", o, w.drainer.drained)
	}
}

// Poststop takes what createRuntime read in config.json from the pin: a
// config.json gone (or changed) meanwhile changes nothing.
func TestPoststopUsesPinnedConfig(t *testing.T) {
	w := newWorld()
	w.bundles.configs["/b"].CgroupsPath = "/kubepods/besteffort/pod1/abc"
	w.pinned(t, "c", 100)
	delete(w.bundles.configs, "/b")
	o := w.Poststop(ctx, st("c", 0, nil))
	h := w.occ.hints[len(w.occ.hints)-1]
	if o.Action != Drained || !o.Released || len(h.Cgroups) != 2 {
		t.Errorf("poststop without config.json: %+v, hint %+v; want drained with the pinned cgroup hints", o, h)
	}
}

// With DeferCount a clean pin carries createRuntime's run for whoever
// releases it to count, once: poststop, gc, or the createRuntime that
// replaces it as a leftover (which counts its own run at once).
func TestCountDeferredToRelease(t *testing.T) {
	w := newWorld()
	w.DeferCount, w.Started = true, time.Now().Add(-3*time.Millisecond)
	o := w.CreateRuntime(ctx, st("c", 100, nil))
	run := w.pins.pins["c"].Meta.Uncounted
	if !o.CountDeferred || run == nil || run.DurationUS < 3000 {
		t.Fatalf("createRuntime: %+v, uncounted %+v; want deferred with its duration", o, run)
	}
	if d := w.Poststop(ctx, st("c", 0, nil)); d.Uncounted != run {
		t.Errorf("poststop released the pin without its run: %+v", d)
	}
	if d := w.Poststop(ctx, st("c", 0, nil)); d.Uncounted != nil {
		t.Errorf("a second poststop counts the run again: %+v", d)
	}

	w.pinned(t, "c", 200) // a leftover
	o = w.CreateRuntime(ctx, st("c", 100, nil))
	if o.CountDeferred || w.pins.pins["c"].Meta.Uncounted != nil || o.Leftover == nil || o.Leftover.Uncounted == nil {
		t.Errorf("replacing a leftover: %+v, leftover %+v; want both runs counted now", o, o.Leftover)
	}

	w.Poststop(ctx, st("c", 0, nil))
	w.pinned(t, "c", 100)
	p, _ := w.pins.Get("c")
	if g := w.Collect(ctx, p, CollectOptions{}); g.Action != Released || g.Uncounted == nil {
		t.Errorf("gc released the pin without its run: %+v", g)
	}

	w.DeferCount = false
	if o := w.CreateRuntime(ctx, st("c", 100, nil)); o.CountDeferred || w.pins.pins["c"].Meta.Uncounted != nil {
		t.Errorf("metrics off: %+v", o)
	}
}

func TestLeftoverPinReplaced(t *testing.T) {
	w := newWorld()
	w.pinned(t, "c", 200) // an earlier container with this id, never stopped
	o := w.CreateRuntime(ctx, st("c", 100, nil))
	if o.Action != Pinned || o.Netns != ctrNS.String() || w.pins.pins["c"].NS != ctrNS {
		t.Fatalf("outcome %+v, want the new namespace pinned", o)
	}
	// The leftover's drain belongs to the leftover, not to the new container.
	if o.Report != nil || o.Processes != nil {
		t.Errorf("new container's outcome carries the leftover's drain: %+v", o)
	}
	l := o.Leftover
	if l == nil || l.Action != Drained || !l.Released || l.Netns != otherNS.String() || l.Report == nil {
		t.Fatalf("leftover %+v, want drained and released", l)
	}
	if len(w.drainer.drained) != 1 || w.drainer.drained[0] != otherNS {
		t.Errorf("drained %v, want the leftover's namespace only", w.drainer.drained)
	}
	if len(o.Warnings) == 0 || !strings.Contains(o.Warnings[0], "leftover") {
		t.Errorf("warnings %q", o.Warnings)
	}
}

func TestPoststop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(w *world)
		action   Action
		drained  bool
		released bool
		want     string // in the reason, error or warnings
		warns    bool
	}{
		{"drains its pin", func(w *world) {}, Drained, true, true, "", false},
		{"live processes", func(w *world) {
			w.occ.procs[ctrNS] = []netns.Proc{{PID: 7, Comm: "pause"}}
		}, SkippedShared, false, true, "live processes still in the namespace (shared with another container): 7 pause", false},
		{"opted out in config.json", func(w *world) {
			// A pin without createRuntime's reading of config.json
			// (unreadable then, or made by an older version): read now.
			w.pins.pins["c"].Meta.Config = nil
			w.bundles.configs["/b"].Annotations = map[string]string{oci.AnnotationDrain: "off"}
		}, OptedOut, false, true, "opted out", false},
		{"pin of the host's namespace", func(w *world) {
			w.pins.pins["c"].NS = hostNS
			w.ns.paths[w.pins.Path("c")] = hostNS
		}, Refused, false, true, "refusing to drain", false},
		{"failed drain", func(w *world) { w.drainer.err = errors.New("sock_diag: boom") }, Failed, true, true, "boom", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.pinned(t, "c", 100)
			tc.setup(w)
			o := w.Poststop(ctx, st("c", 0, nil))
			checkPoststop(t, w, o, tc.action, tc.drained, tc.released, tc.want, tc.warns)
		})
	}
}

func TestPoststopWithoutPin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *oci.Config // nil: no config.json
		hooked  bool
		action  Action
		drained bool
		want    string
		warns   bool
	}{
		{"no config.json", nil, false, Failed, false, "no pin at", false},
		{"no network namespace of its own", &oci.Config{}, false, NothingToDrain, false, "no network namespace of its own", false},
		{"namespace by /proc path", &oci.Config{HasNetns: true, NetnsPath: "/proc/100/ns/net"}, false, NothingToDrain, false, "stale", true},
		{"host's namespace by /proc path", &oci.Config{HasNetns: true, NetnsPath: "/proc/1/ns/net"}, false, NothingToDrain, false, "shares the host's network namespace", false},
		{"namespace not nsfs", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/gone"}, false, NothingToDrain, false, "already released", true},
		{"engine's mount", &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1"}, false, Drained, true, "", false},
		{"createRuntime never ran", &oci.Config{HasNetns: true}, true, NothingToDrain, false, "never pinned", false},
		{"createRuntime not installed", &oci.Config{HasNetns: true}, false, NothingToDrain, false, "was the createRuntime hook installed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			delete(w.bundles.configs, "/b")
			if tc.cfg != nil {
				w.bundles.configs["/b"] = tc.cfg
			}
			w.bundles.hooked = tc.hooked
			o := w.Poststop(ctx, st("c", 0, nil))
			checkPoststop(t, w, o, tc.action, tc.drained, false, tc.want, tc.warns)
		})
	}
}

func checkPoststop(t *testing.T, w *world, o Outcome, action Action, drained, released bool, want string, warns bool) {
	t.Helper()
	if o.Action != action || o.Container != "c" {
		t.Errorf("outcome %+v, want %s", o, action)
	}
	if (len(w.drainer.drained) > 0) != drained {
		t.Errorf("drained %v, want drained=%v", w.drainer.drained, drained)
	}
	if drained && o.Report == nil {
		t.Error("drained without a report")
	}
	if o.Released != released {
		t.Errorf("released %v, want %v", o.Released, released)
	}
	if _, left := w.pins.pins["c"]; left {
		t.Error("pin outlived poststop")
	}
	if got := o.Reason + fmt.Sprint(o.Err) + strings.Join(o.Warnings, "|"); !strings.Contains(got, want) {
		t.Errorf("outcome %+v does not say %q", o, want)
	}
	if (len(o.Warnings) > 0) != warns {
		t.Errorf("warnings %q, want some: %v", o.Warnings, warns)
	}
	if (o.Err != nil) != (action == Failed || action == Refused) {
		t.Errorf("error %v with action %s", o.Err, action)
	}
}

func TestDrainOwnNamespaceRefused(t *testing.T) {
	w := newWorld()
	w.ns.hostVerified = false // host unknown: the own-namespace check still holds
	w.ns.paths["/var/run/netns/self"] = selfNS
	o := w.DrainPath(ctx, "/var/run/netns/self")
	if o.Action != Refused || !errors.Is(o.Err, netns.ErrSelf) || len(w.drainer.drained) != 0 {
		t.Errorf("outcome %+v, want refused as sockreap's own", o)
	}
	// An unverified host check is said, not silently passed.
	o = w.DrainPath(ctx, "/var/run/netns/cni-1")
	if o.Action != Drained || len(o.Warnings) != 1 || !strings.Contains(o.Warnings[0], "host") {
		t.Errorf("outcome %+v, want drained with a warning about the host check", o)
	}
}

func TestDrainPath(t *testing.T) {
	w := newWorld()
	if o := w.DrainPath(ctx, "/proc/100/ns/net"); o.Action != Refused || o.Err == nil {
		t.Errorf("/proc path: %+v, want refused", o)
	}
	if o := w.DrainPath(ctx, "/var/run/netns/gone"); o.Action != NothingToDrain || o.Err != nil {
		t.Errorf("unmounted path: %+v, want nothing to drain", o)
	}
	w.occ.procs[ctrNS] = []netns.Proc{{PID: 9, Comm: "app"}}
	if o := w.DrainPath(ctx, "/var/run/netns/cni-1"); o.Action != SkippedShared || len(o.Processes) != 1 {
		t.Errorf("occupied: %+v, want skipped", o)
	}
	delete(w.occ.procs, ctrNS)
	if o := w.DrainPath(ctx, "/var/run/netns/cni-1"); o.Action != Drained || o.Netns != ctrNS.String() {
		t.Errorf("free: %+v, want drained", o)
	}
	if len(w.drainer.drained) != 1 {
		t.Errorf("drains: %v", w.drainer.drained)
	}
}

func TestBudgetExceeded(t *testing.T) {
	w := newWorld()
	w.pinned(t, "c", 100)
	past, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	o := w.Poststop(past, st("c", 0, nil))
	if o.Action != BudgetExceeded || o.Err == nil || len(w.drainer.drained) != 0 || !o.Released {
		t.Errorf("outcome %+v, want budget-exceeded, no drain, pin released", o)
	}
}

// The drain's timeout fits inside the caller's deadline.
func TestDrainTimeoutInsideDeadline(t *testing.T) {
	w := newWorld()
	var got time.Duration
	w.Drainer = drainFunc(func(opts reap.Options) { got = opts.Timeout })
	w.Options.Timeout = time.Minute
	dl, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	w.DrainPath(dl, "/var/run/netns/cni-1")
	if got <= 0 || got >= time.Second {
		t.Errorf("drain timeout %s, want within the 1s deadline", got)
	}
}

type drainFunc func(reap.Options)

func (f drainFunc) Drain(_ context.Context, ns *netns.NS, opts reap.Options) (*reap.Report, error) {
	f(opts)
	return &reap.Report{}, nil
}

func TestCollect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(w *world)
		opts   CollectOptions
		action Action
		kept   bool // the pin is still there
		want   string
	}{
		{"container gone", func(w *world) {}, CollectOptions{}, Released, false, "container gone"},
		{"dry run", func(w *world) {}, CollectOptions{DryRun: true}, WouldRelease, true, "would drain"},
		{"container known", func(w *world) {
			w.Containers = fakeContainers{gone: false, why: "the runtime still has the container"}
		}, CollectOptions{}, Kept, true, "runtime still has"},
		{"process inside", func(w *world) {
			w.occ.procs[ctrNS] = []netns.Proc{{PID: 5, Comm: "sleep"}}
		}, CollectOptions{}, Kept, true, "in use by 5 sleep"},
		{"a hook holds it", func(w *world) { w.pins.locked["c"] = true }, CollectOptions{}, Kept, true, "hook is working"},
		{"stale", func(w *world) { w.pins.pins["c"].Mounted = false }, CollectOptions{}, Released, false, "stale"},
		{"released meanwhile", func(w *world) { w.pins.getErr = fmt.Errorf("container c: %w", pin.ErrNoPin) }, CollectOptions{}, NothingToDo, false, "released meanwhile"},
		{"pin unreadable", func(w *world) {
			w.pins.getErr = fmt.Errorf("container c: look at pin: %w", unix.EACCES)
		}, CollectOptions{}, Failed, true, "permission denied"},
		{"drain fails, pin still released", func(w *world) { w.drainer.err = errors.New("boom") }, CollectOptions{}, Released, false, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			w.pinned(t, "c", 100)
			p := w.pins.pins["c"]
			tc.setup(w)
			o := w.Collect(ctx, p, tc.opts)
			if o.Action != tc.action {
				t.Errorf("outcome %+v, want %s", o, tc.action)
			}
			if got := o.Reason + fmt.Sprint(o.Err); !strings.Contains(got, tc.want) {
				t.Errorf("outcome %+v does not say %q", o, tc.want)
			}
			if tc.name == "released meanwhile" {
				return // the fake's pin is there; Get said otherwise
			}
			if _, has := w.pins.pins["c"]; has != tc.kept {
				t.Errorf("pin still there: %v, want %v", has, tc.kept)
			}
			if o.Released == tc.kept && tc.action != WouldRelease && tc.action != Failed {
				t.Errorf("Released = %v", o.Released)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		o    Outcome
		want string
	}{
		{Outcome{Action: Drained, Released: true}, "drained; pin released"},
		{Outcome{Action: SkippedShared, Reason: "2 live processes still in the namespace (shared with another container)", Released: true},
			"skipped: 2 live processes still in the namespace (shared with another container); pin released"},
		{Outcome{Action: OptedOut, Reason: "opted out by annotation io.sockreap.drain"}, "skipped: opted out by annotation io.sockreap.drain"},
		{Outcome{Action: NothingToDo}, "nothing to do at this stage"},
		{Outcome{Action: BudgetExceeded}, "abandoned at the budget"},
		{Outcome{}, "failed"},
	} {
		if got := tc.o.Message(); got != tc.want {
			t.Errorf("Message() = %q, want %q", got, tc.want)
		}
	}
}

// The same id under two runtime roots is two containers: two pins, and
// neither createRuntime touches the other's.
func TestSameIDUnderTwoRoots(t *testing.T) {
	w := newWorld()
	w.Containers = fakeContainers{gone: true, root: "/run/runc"}
	w.pinned(t, "c", 200)
	w.Containers = fakeContainers{gone: true, root: "/run/other-root"}
	o := w.CreateRuntime(ctx, st("c", 100, nil))
	if o.Action != Pinned || o.Leftover != nil || len(w.pins.pins) != 2 || len(w.drainer.drained) != 0 {
		t.Fatalf("second root: %+v, pins %v, drained %v; want a pin of its own and nothing drained", o, w.pins.pins, w.drainer.drained)
	}
	a, b := pin.KeyOf("c", "/run/runc"), pin.KeyOf("c", "/run/other-root")
	if w.pins.pins[a].NS != otherNS || w.pins.pins[b].NS != ctrNS || w.pins.pins[b].Meta.ID != "c" {
		t.Errorf("pins %v", w.pins.pins)
	}
	// Each poststop finds its own pin.
	if d := w.Poststop(ctx, st("c", 0, nil)); d.Action != Drained || !d.Released || d.Netns != ctrNS.String() {
		t.Errorf("poststop under the second root: %+v", d)
	}
	if _, ok := w.pins.pins[a]; !ok {
		t.Error("poststop under one root released the other root's pin")
	}
}

// A pin in the way whose namespace still has live processes is someone's
// running container: createRuntime leaves it alone and says so.
func TestLeftoverWithLiveProcessesKept(t *testing.T) {
	w := newWorld()
	w.pinned(t, "c", 200)
	w.occ.procs[otherNS] = []netns.Proc{{PID: 200, Comm: "app"}}
	o := w.CreateRuntime(ctx, st("c", 100, nil))
	if o.Action != Failed || o.Err == nil || !strings.Contains(o.Err.Error(), "live processes") || !strings.Contains(o.Err.Error(), "200 app") {
		t.Fatalf("outcome %+v, want a failure naming the live process", o)
	}
	if p := w.pins.pins["c"]; p == nil || p.NS != otherNS {
		t.Errorf("the running container's pin was released or replaced: %+v", p)
	}
	if len(w.drainer.drained) != 0 {
		t.Errorf("drained %v", w.drainer.drained)
	}
}

// Where poststop does not run under the runtime (podman runs it itself),
// the root is unknown there: the pin is found by container id and bundle.
func TestPoststopFindsPinByBundle(t *testing.T) {
	w := newWorld()
	w.Containers = fakeContainers{gone: true, root: "/run/crun"}
	w.pinned(t, "c", 100)
	w.Containers = fakeContainers{gone: true}
	d := w.Poststop(ctx, st("c", 0, nil))
	if d.Action != Drained || !d.Released || len(w.pins.pins) != 0 {
		t.Fatalf("poststop without the runtime's root: %+v, pins %v", d, w.pins.pins)
	}
	// Two candidates (same id and bundle under two roots): none is guessed.
	w.Containers = fakeContainers{gone: true, root: "/run/a"}
	w.pinned(t, "c", 100)
	w.Containers = fakeContainers{gone: true, root: "/run/b"}
	w.pinned(t, "c", 200)
	w.Containers = fakeContainers{gone: true}
	if d := w.Poststop(ctx, st("c", 0, nil)); d.Released || len(w.pins.pins) != 2 {
		t.Errorf("ambiguous poststop released a pin: %+v", d)
	}
}

// The checker is told where the container's neighbours are likeliest, and
// the sockets it finds held outside reach the drain (except with Force).
func TestHintsAndKeep(t *testing.T) {
	w := newWorld()
	w.occ.keep = func(uint64) bool { return true }
	w.bundles.configs["/b"].CgroupsPath = "/kubepods/besteffort/pod1/abc"
	w.pinned(t, "c", 100)
	o := w.Poststop(ctx, st("c", 0, nil))
	h := w.occ.hints[len(w.occ.hints)-1]
	if o.Action != Drained || o.Checked != "checked" || h.Everyone || len(h.PIDs) != 1 || h.PIDs[0] != 100 ||
		len(h.Cgroups) != 2 || h.Cgroups[1] != "/kubepods/besteffort/pod1" {
		t.Errorf("poststop: %+v, hint %+v; want the pin's pid and the container's and pod's cgroups, not everyone", o, h)
	}
	if !w.drainer.keep[len(w.drainer.keep)-1] {
		t.Error("the drain did not get the checker's Keep")
	}

	w = newWorld()
	w.bundles.configs["/b"] = &oci.Config{HasNetns: true, NetnsPath: "/var/run/netns/cni-1"}
	w.bundles.configs["/app"] = &oci.Config{HasNetns: true, NetnsPath: "/proc/200/ns/net"}
	w.Poststop(ctx, st("c", 0, nil))
	if h := w.occ.hints[0]; h.Everyone || len(h.PIDs) != 0 {
		t.Errorf("engine's mount: hint %+v, want nothing hinted", h)
	}

	w = newWorld()
	w.Force = true
	w.occ.keep = func(uint64) bool { return true }
	w.DrainNamespace(ctx, &netns.NS{ID: ctrNS, Path: "/var/run/netns/cni-1"}, Hint{PIDs: []int{5}, Everyone: true})
	if h := w.occ.hints[0]; !h.Everyone || !h.NoHolders || len(h.PIDs) != 1 || w.drainer.keep[0] {
		t.Errorf("forced drain: hint %+v, keep %v; want the hint passed through, no holders looked for and nothing kept", h, w.drainer.keep)
	}
	w.Force = false
	w.DrainNamespace(ctx, &netns.NS{ID: ctrNS, Path: "/var/run/netns/cni-1"}, Hint{Everyone: true})
	if h := w.occ.hints[1]; h.NoHolders {
		t.Errorf("drain without force: hint %+v; the holders must be looked for", h)
	}
}

// An empty namespace (the check read its counters) is not handed to the
// drainer: there is nothing to destroy.
func TestEmptyNamespaceNotDrained(t *testing.T) {
	w := newWorld()
	w.occ.empty = true
	w.pinned(t, "c", 100)
	o := w.Poststop(ctx, st("c", 0, nil))
	if o.Action != Drained || !o.Released || o.Report == nil || o.Report.Found != 0 || len(w.drainer.drained) != 0 {
		t.Errorf("empty namespace: %+v, drained %v; want an empty report and no drain", o, w.drainer.drained)
	}
}
