package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/textsafe"
)

// SystemNamespaces are the kernel's namespaces, seen from this process.
type SystemNamespaces struct{}

func (SystemNamespaces) IDOf(path string) (netns.ID, error)       { return netns.IDOf(path) }
func (SystemNamespaces) Classify(path string) oci.NetnsPath       { return oci.ClassifyNetnsPath(path) }
func (SystemNamespaces) Open(path string) (*netns.NS, error)      { return netns.Open(path) }
func (SystemNamespaces) IsHost(id netns.ID) (host, verified bool) { return netns.IsHost(id) }
func (SystemNamespaces) Self() (netns.ID, error)                  { return netns.Self() }

// Checker is the safety check of package inuse: its cost follows what the
// namespace holds (nothing, sockets no descriptor holds, or sockets whose
// holders it looks for), not how many processes the host runs.
type Checker struct{}

func (Checker) InUse(ctx context.Context, ns *netns.NS, h Hint) (Occupants, error) {
	// A scan of a busy host gets at most half of what is left of the
	// budget, so that the drain keeps the other half; a scan cut short
	// keeps the sockets it could not clear.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	v, err := inuse.Check(ctx, ns, inuse.Hint{PIDs: h.PIDs, Cgroups: h.Cgroups, Everyone: h.Everyone, NoHolders: h.NoHolders})
	if err != nil {
		return Occupants{}, err
	}
	return Occupants{Procs: v.Procs(), Unreadable: v.Unreadable, Keep: v.KeepFunc(), Checked: v.String(), Empty: v.Empty()}, nil
}

// Reaper drains with package reap, using the kernel probe cached under
// StateDir.
type Reaper struct{ StateDir string }

func (r Reaper) Drain(ctx context.Context, ns *netns.NS, opts reap.Options) (*reap.Report, error) {
	// A P for each destroyer (reap.GOMAXPROCS), raised only here: the
	// core calls the drainer only for a namespace with sockets, and a hook
	// process that starts with more Ps than CPUs pays for them in threads
	// and context switches (in every hook, most of which destroy
	// nothing). Process-wide, and only ever raised.
	reap.RaiseGOMAXPROCS(reap.GOMAXPROCS(opts.Workers))
	var probeErr error
	if opts.Caps == nil {
		// An empty namespace needs no kernel probe: Drain returns
		// before it. The probe costs a scratch namespace and hundreds
		// of milliseconds where no cache is yet.
		if n, err := reap.SocketsInUse(ns); err != nil || n > 0 {
			opts.Caps, probeErr = reap.ProbeCached(r.StateDir)
		}
	}
	rep, err := reap.Drain(ctx, ns, opts)
	if rep != nil && probeErr != nil {
		rep.Warnings = append(rep.Warnings, "kernel probe: "+probeErr.Error())
	}
	return rep, err
}

// BundleFiles reads config.json from the bundle directory.
type BundleFiles struct{}

func (BundleFiles) ReadConfig(bundle string) (*oci.Config, error) { return oci.ReadConfig(bundle) }
func (BundleFiles) HasHook(bundle string, stage Stage) (bool, error) {
	return oci.HasHook(bundle, stage)
}

// RuntimeStates judges containers by their runtime's state directory (runc:
// /run/runc/<id>), recorded in the pin's metadata, and by their bundle.
type RuntimeStates struct{}

// RuntimeState asks the hook's parent, the runtime, for its state directory.
func (RuntimeStates) RuntimeState(id string) string { return oci.RuntimeStateDir(os.Getppid(), id) }

// Root is the runtime's state root, read from the hook's parent.
func (RuntimeStates) Root() string { return oci.RuntimeRoot(os.Getppid()) }

func (RuntimeStates) Gone(p *pin.Pin, minAge time.Duration, now time.Time) (bool, string) {
	m := p.Meta
	if m != nil && m.RuntimeState != "" {
		if _, err := os.Stat(m.RuntimeState); err == nil {
			return false, "the runtime still has the container (" + textsafe.Quote(m.RuntimeState) + "); its delete releases the pin"
		}
		return true, "container gone (runtime state " + textsafe.Quote(m.RuntimeState) + " removed)"
	}
	if m != nil && m.Bundle != "" {
		if _, err := os.Stat(oci.ConfigPath(m.Bundle)); errors.Is(err, fs.ErrNotExist) {
			return true, "container gone (bundle " + textsafe.Quote(m.Bundle) + " removed)"
		}
	}
	if m != nil { // without metadata the age is unknown: old enough
		if age := p.Age(now); age < minAge {
			return false, fmt.Sprintf("no process inside but only %s old (--min-age %s)", age.Round(time.Second), minAge)
		}
	}
	return true, "no process inside and the container's runtime state is unknown"
}
