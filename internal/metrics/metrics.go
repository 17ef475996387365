// Package metrics turns what sockreap does into Prometheus metrics: drains
// by front end and outcome, sockets by action, protocol, state class and
// owner kind, drain and stage durations, hook failures, pins, gc releases,
// the kernel's capabilities and dying network namespaces.
//
// The short-lived hooks cannot be scraped, so they leave their figures in a
// file for node_exporter's textfile collector (Textfile): every hook process
// adds its event to counters kept in a state file under an exclusive
// flock and rewrites sockreap.prom atomically, so concurrent hooks lose no
// increment and a scrape never sees half a file. Long-running front ends
// (the NRI plugin) serve /metrics with the official client library instead
// (package metrics/endpoint); both take DrainEvents through the Sink
// interface, so every front end reports alike.
//
// The exposition here is written by hand, not with client_golang: a hook is
// a fresh process per container start and stop, and the client library's
// start-up (its registry, protobuf descriptors, expfmt) is paid every
// time: a program counting one event took 6 ms with it and 3 ms with this
// package (docs/monitoring.md), while the text format is a few lines of
// well-specified output (checked with promtool in the tests). Only the
// hooks' path is hand-written; the endpoint uses the library.
package metrics

import (
	"time"

	"github.com/sockreap/sockreap/internal/reap"
)

// Front ends, the frontend label.
const (
	FrontendHook = "hook" // the OCI hooks
	FrontendNRI  = "nri"  // the NRI plugin
	FrontendGC   = "gc"   // sockreap-hook gc
	FrontendCLI  = "cli"  // sockreap-hook drain
)

// OutcomeKilled is the outcome of a hook that never reported: its process
// was killed (by the runtime, at the hook's OCI timeout) before it ended.
const OutcomeKilled = "killed"

// Outcomes of a drain decision, the outcome label (lifecycle's actions).
var Outcomes = []string{"drained", "nothing-to-drain", "skipped-shared", "opted-out", "refused", "budget-exceeded", "failed", OutcomeKilled}

// DrainEvent is one front end's run: a hook stage, an NRI request, a pin
// gc collected, a drain command.
type DrainEvent struct {
	Frontend string // FrontendHook, ...
	// Stage is the OCI stage of a hook run ("createRuntime", "poststop");
	// a drain decision (counted in sockreap_drains_total) is a run with
	// a Stage of poststop or none.
	Stage string
	// Outcome is the decision taken: lifecycle's action ("drained",
	// "skipped-shared", ...; gc's "released", "kept").
	Outcome string
	// Duration is the drain's own time; zero takes the report's.
	Duration time.Duration
	// StageDuration is the whole run's time (a hook stage, start to log).
	StageDuration time.Duration
	// Report is the drain's report, nil when nothing was drained.
	Report *reap.Report
	// Failed says the run failed (its log line is an error).
	Failed bool
	// Released says gc released a pin.
	Released bool
}

// IsDrain tells whether the event is a drain decision: a poststop, an
// NRI request, a drain command, or a pin gc drained.
func (e DrainEvent) IsDrain() bool {
	switch e.Frontend {
	case FrontendHook:
		return e.Stage == "poststop"
	case FrontendGC:
		return e.Report != nil || e.Failed
	}
	return true
}

// Gauges are the node's current figures; a nil field is left as it was.
type Gauges struct {
	Pins      *int // pins held
	PinsStale *int // pins whose container is gone, still held after gc
	// DyingNetns is the number of network namespaces no process or
	// mount holds, its lower bound when DyingNetnsUpper is set too.
	DyingNetns      *int
	DyingNetnsUpper *int
	Kernel          *reap.Capabilities // the kernel probe's answers
	GCRun           *time.Time         // when gc last ran
}

// Sink receives a front end's events.
type Sink interface {
	Record(DrainEvent) error
	SetGauges(Gauges) error
}

// Int returns a pointer to n, for Gauges.
func Int(n int) *int { return &n }

// Nop is a Sink that drops everything (metrics off).
type Nop struct{}

func (Nop) Record(DrainEvent) error { return nil }
func (Nop) SetGauges(Gauges) error  { return nil }
