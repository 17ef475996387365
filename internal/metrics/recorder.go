package metrics

import (
	"sort"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/reap"
)

// Buckets are the upper bounds of the duration histograms, in seconds:
// an empty namespace drains in well under a millisecond, a large one in
// hundreds, and the default budget is 2 s.
var Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram is a cumulative-free histogram over Buckets (Counts[i] counts
// observations in bucket i alone; the last entry is +Inf).
type Histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
	Count  uint64   `json:"count"`
}

// Observe adds one observation of v seconds.
func (h *Histogram) Observe(v float64) {
	if len(h.Counts) != len(Buckets)+1 {
		h.Counts = make([]uint64, len(Buckets)+1)
	}
	i := sort.SearchFloat64s(Buckets, v) // first bound >= v
	h.Counts[i]++
	h.Sum += v
	h.Count++
}

// Recorder accumulates events and gauges in memory; it is what the
// textfile's state file holds between hook processes (state.go), and it
// renders the exposition. Series keys join label values with "|".
type Recorder struct {
	Drains        map[string]uint64     `json:"drains"`         // frontend|outcome
	HookRuns      map[string]uint64     `json:"hook_runs"`      // stage|outcome
	HookFailures  map[string]uint64     `json:"hook_failures"`  // stage
	Sockets       map[string]uint64     `json:"sockets"`        // action|protocol|state|owner
	DrainDuration map[string]*Histogram `json:"drain_duration"` // frontend
	StageDuration map[string]*Histogram `json:"stage_duration"` // stage
	GCReleases    uint64                `json:"gc_releases"`

	Pins            *int               `json:"pins,omitempty"`
	PinsStale       *int               `json:"pins_stale,omitempty"`
	DyingNetnsLower *int               `json:"dying_netns_lower,omitempty"`
	DyingNetnsUpper *int               `json:"dying_netns_upper,omitempty"`
	Kernel          *reap.Capabilities `json:"kernel,omitempty"`
	GCLastRun       int64              `json:"gc_last_run,omitempty"` // unix seconds

	// Gen counts updates (the state file's fixed-width header).
	Gen uint64 `json:"-"`

	// RunDirs are the directories of running markers writers used
	// (Textfile.RunDir), swept by every writer.
	RunDirs []string `json:"run_dirs,omitempty"`
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	r := &Recorder{}
	r.init()
	return r
}

func (r *Recorder) init() {
	if r.Drains == nil {
		r.Drains = map[string]uint64{}
	}
	if r.HookRuns == nil {
		r.HookRuns = map[string]uint64{}
	}
	if r.HookFailures == nil {
		r.HookFailures = map[string]uint64{}
	}
	if r.Sockets == nil {
		r.Sockets = map[string]uint64{}
	}
	if r.DrainDuration == nil {
		r.DrainDuration = map[string]*Histogram{}
	}
	if r.StageDuration == nil {
		r.StageDuration = map[string]*Histogram{}
	}
}

func key(parts ...string) string { return strings.Join(parts, "|") }

func observe(m map[string]*Histogram, k string, d time.Duration) {
	h := m[k]
	if h == nil {
		h = &Histogram{}
		m[k] = h
	}
	h.Observe(d.Seconds())
}

// Record adds one event.
func (r *Recorder) Record(e DrainEvent) error {
	r.init()
	if e.Frontend == FrontendHook && e.Stage != "" {
		r.HookRuns[key(e.Stage, e.Outcome)]++
		if e.Failed {
			r.HookFailures[e.Stage]++
		}
		observe(r.StageDuration, e.Stage, e.StageDuration)
	}
	if e.IsDrain() {
		r.Drains[key(e.Frontend, e.Outcome)]++
	}
	if e.Frontend == FrontendGC && e.Released {
		r.GCReleases++
	}
	if rep := e.Report; rep != nil && !rep.DryRun {
		d := e.Duration
		if d == 0 {
			d = time.Duration(rep.DurationUS) * time.Microsecond
		}
		observe(r.DrainDuration, e.Frontend, d)
		r.addSockets(rep)
	}
	return nil
}

// Socket actions, the action label.
const (
	ActionFound     = "found"
	ActionDestroyed = "destroyed"
	ActionSpared    = "spared"
	ActionRemaining = "remaining"
)

// addSockets counts a report's sockets by action. Spared orphans are the
// closing orphans left by policy; remaining is everything else the drain
// left (its report's left), so the actions after found are disjoint.
func (r *Recorder) addSockets(rep *reap.Report) {
	add := func(action string, gs []reap.Group) {
		for _, g := range gs {
			if g.Count > 0 {
				r.Sockets[key(action, g.Protocol, StateClass(g.State), g.Owner)] += uint64(g.Count)
			}
		}
	}
	add(ActionFound, rep.FoundBy)
	add(ActionDestroyed, rep.DestroyedBy)
	for _, g := range rep.Left {
		action := ActionRemaining
		if rep.Spared > 0 && g.Owner == reap.OwnerOrphan && StateClass(g.State) == "closing" {
			action = ActionSpared
		}
		add(action, []reap.Group{g})
	}
}

// SetGauges sets the gauges g names.
func (r *Recorder) SetGauges(g Gauges) error {
	if g.Pins != nil {
		r.Pins = Int(*g.Pins)
	}
	if g.PinsStale != nil {
		r.PinsStale = Int(*g.PinsStale)
	}
	if g.DyingNetns != nil {
		r.DyingNetnsLower = Int(*g.DyingNetns)
		r.DyingNetnsUpper = Int(*g.DyingNetns)
	}
	if g.DyingNetnsUpper != nil {
		r.DyingNetnsUpper = Int(*g.DyingNetnsUpper)
	}
	if g.Kernel != nil {
		k := *g.Kernel
		k.Notes = nil
		r.Kernel = &k
	}
	if g.GCRun != nil {
		r.GCLastRun = g.GCRun.Unix()
	}
	return nil
}

// killed books a hook that was killed before it reported.
func (r *Recorder) killed(stage string) {
	r.init()
	r.HookRuns[key(stage, OutcomeKilled)]++
	r.HookFailures[stage]++
	if stage == "poststop" {
		r.Drains[key(FrontendHook, OutcomeKilled)]++
	}
}
