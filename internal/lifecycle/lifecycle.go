// Package lifecycle makes sockreap's decisions about a container's network
// namespace: pin it at createRuntime, drain it and release the pin at
// poststop, release what a vanished container left (gc's collect step),
// and drain a namespace a front end names by path (the NRI plugin's pod
// sandbox). Every front end — the OCI hook, gc, drain, the NRI plugin —
// calls the same Core, so they decide alike.
//
// The package holds no flags, no logging and no exit codes: each call
// returns an Outcome (what was done, why, the drain report, the live
// processes, warnings) that the front end logs and maps. The outside world
// comes in through small interfaces (Pins, Namespaces, Occupancy, Drainer,
// Bundles, Containers), so the decision table is tested without root.
package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
)

// Stage is an OCI hook stage (one definition, in package oci).
type Stage = oci.Stage

// The stages sockreap acts at.
const (
	StageCreateRuntime = oci.StageCreateRuntime
	StagePoststop      = oci.StagePoststop
)

// Pins keeps namespaces reachable after their processes are gone;
// pin.Store implements it. Pins are named by key (pin.KeyOf the container
// id and its runtime's root).
type Pins interface {
	Lock(key string, wait bool) (unlock func(), err error)
	// PinNS pins the open namespace ns, the one that was checked, under
	// m.Key.
	PinNS(ns *netns.NS, m pin.Meta) (*pin.Pin, error)
	Get(key string) (*pin.Pin, error)
	// Has reports whether a pin is under key, without reading it.
	Has(key string) bool
	List() ([]*pin.Pin, error)
	Release(key string) (released bool, err error)
	Path(key string) string
}

// Namespaces opens and identifies network namespaces and knows the two
// that must never be drained: the host's and sockreap's own.
type Namespaces interface {
	// IDOf identifies the nsfs file at path; a file that is not one is
	// an error wrapping netns.ErrNotNetns.
	IDOf(path string) (netns.ID, error)
	// Classify tells what a namespace path from config.json or a front
	// end leads to (oci.ClassifyNetnsPath), judged by where it leads.
	Classify(path string) oci.NetnsPath
	Open(path string) (*netns.NS, error)
	// IsHost tells whether id is the host's namespace; verified is false
	// when the host's could not be identified.
	IsHost(id netns.ID) (host, verified bool)
	// Self is the caller's own namespace.
	Self() (netns.ID, error)
}

// Hint tells an Occupancy checker where the namespace's processes were
// last seen, so it can answer "in use" without scanning every process.
// An answer of "not in use" must still cover every process when Everyone
// is set.
type Hint struct {
	PIDs     []int    // processes that were in the namespace (the container's init)
	Cgroups  []string // cgroups the container's processes ran in
	Everyone bool     // look at every process before answering "not in use"
	// NoHolders skips the search for the holders of the namespace's
	// sockets: the caller destroys held sockets anyway (a forced drain).
	NoHolders bool
}

// Occupants are the live processes in a namespace.
type Occupants struct {
	Procs []netns.Proc
	// Unreadable counts processes whose namespace could not be read
	// (pid 1 in some sandboxes).
	Unreadable int
	// Keep, when not nil, tells which socket inodes live processes hold,
	// as found by the same scan, so that what a drain leaves can be
	// attributed without scanning /proc again. nil: not collected.
	Keep func(inode uint64) bool
	// Checked says in words what the check looked at, for the log.
	Checked string
	// Empty: the namespace held no socket when checked; there is
	// nothing to drain.
	Empty bool
}

// Occupancy finds the live processes in a namespace.
type Occupancy interface {
	InUse(ctx context.Context, ns *netns.NS, hint Hint) (Occupants, error)
}

// Drainer empties a namespace of its sockets.
type Drainer interface {
	Drain(ctx context.Context, ns *netns.NS, opts reap.Options) (*reap.Report, error)
}

// Bundles reads what a bundle's config.json says.
type Bundles interface {
	ReadConfig(bundle string) (*oci.Config, error)
	HasHook(bundle string, stage Stage) (bool, error)
}

// Containers knows whether a container still exists.
type Containers interface {
	// RuntimeState is the directory the runtime keeps for container id
	// while it knows it, "" when unknown.
	RuntimeState(id string) string
	// Root is the state root of the runtime running the hook (runc
	// --root), "" when unknown; with the id it keys the pin.
	Root() string
	// Gone tells whether the pin's container no longer exists, and why
	// (or why that cannot be said yet).
	Gone(p *pin.Pin, minAge time.Duration, now time.Time) (gone bool, why string)
}

// Core makes the lifecycle decisions. Its fields are read-only once it is
// in use, so one Core serves concurrent calls.
type Core struct {
	Pins       Pins
	Namespaces Namespaces
	Occupancy  Occupancy
	Drainer    Drainer
	Bundles    Bundles
	Containers Containers
	// Options are the drain options (protocols, orphan policy, workers,
	// timeout). A context deadline shortens the timeout to fit.
	Options reap.Options
	// Force drains even when live processes are inside (the operator's
	// drain --force). Hooks and gc never set it.
	Force bool
	// Progress, when set, is called with what is known of an outcome as
	// soon as it is known (container, namespace, pin), so that a front
	// end giving up at its budget can still say what it was working on.
	Progress func(Outcome)
	// DeferCount has createRuntime leave its metrics to whoever releases
	// the pin (pin.Meta.Uncounted): set when metrics are on. Started is
	// when the stage began, for the run's duration.
	DeferCount bool
	Started    time.Time
}

// New returns a Core working on the real system with the pins and the
// kernel probe cache under stateDir.
func New(stateDir string, opts reap.Options) *Core {
	return &Core{
		Pins:       pin.Store{Dir: stateDir},
		Namespaces: SystemNamespaces{},
		Occupancy:  Checker{},
		Drainer:    Reaper{StateDir: stateDir},
		Bundles:    BundleFiles{},
		Containers: RuntimeStates{},
		Options:    opts,
	}
}

// Action is what a call did, in kebab-case for logs and JSON.
type Action string

// Actions.
const (
	Pinned         Action = "pinned"           // createRuntime pinned the namespace
	Drained        Action = "drained"          // the namespace was drained
	NothingToDrain Action = "nothing-to-drain" // no namespace of the container's own, or none left
	SkippedShared  Action = "skipped-shared"   // live processes inside: another container's
	OptedOut       Action = "opted-out"        // annotation io.sockreap.drain=false
	Refused        Action = "refused"          // the host's or sockreap's own namespace
	BudgetExceeded Action = "budget-exceeded"  // no time left to drain
	Failed         Action = "failed"           // Err says why
	NothingToDo    Action = "nothing-to-do"    // a stage sockreap does not act at, or a pin released meanwhile
	Released       Action = "released"         // gc released the pin
	Kept           Action = "kept"             // gc left the pin
	WouldRelease   Action = "would-release"    // gc --dry-run
)

// Outcome is what one call decided and did.
type Outcome struct {
	Container string
	Action    Action
	Reason    string // why, in words; empty when the action says it all
	Netns     string // net:[inode]
	Pin       string // the pin's path, when one was used
	Released  bool   // the pin was released
	Report    *reap.Report
	Processes []netns.Proc // the live processes that made the drain skip
	// Unreadable counts processes whose namespace could not be checked.
	Unreadable int
	// Checked is what the safety check looked at (Occupants.Checked).
	Checked  string
	Warnings []string
	// Leftover is what became of an earlier container's pin under the
	// same id that createRuntime found and replaced.
	Leftover *Outcome
	// CountDeferred: createRuntime left its metrics in the pin
	// (Core.DeferCount); the front end counts nothing now.
	CountDeferred bool
	// Uncounted is the createRuntime run recorded in the pin this call
	// released, for the front end to count (pin.Meta.Uncounted).
	Uncounted *pin.Run
	Err       error
}

func (o *Outcome) warn(format string, a ...any) {
	o.Warnings = append(o.Warnings, fmt.Sprintf(format, a...))
}

// fail records err as the outcome.
func (o Outcome) fail(err error) Outcome {
	o.Action, o.Err = Failed, err
	return o
}

// Message is the outcome in words, the log line's message.
func (o Outcome) Message() string {
	var s string
	switch o.Action {
	case SkippedShared, OptedOut:
		s = "skipped: " + o.Reason
	case NothingToDrain:
		s = "nothing to drain"
		if o.Reason != "" {
			s += ": " + o.Reason
		}
	case NothingToDo:
		s = "nothing to do at this stage"
		if o.Reason != "" {
			s = "nothing to do: " + o.Reason
		}
	case BudgetExceeded:
		s = "abandoned at the budget"
	case WouldRelease:
		s = "would release"
	case "":
		s = string(Failed)
	default:
		s = string(o.Action)
	}
	if o.Released && o.Action != Released {
		s += "; pin released"
	}
	return s
}

func (c *Core) progress(o Outcome) {
	if c.Progress != nil {
		c.Progress(o)
	}
}
