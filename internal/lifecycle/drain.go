package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/steptime"
)

// DrainPath drains the namespace mounted at path (e.g. a pod's
// /var/run/netns/cni-<uuid>) under the same rules as poststop: never
// through a /proc path (it names a process, whose pid may be reused),
// never the host's or sockreap's own namespace, never one a live process
// runs in. A path that is no longer a namespace mount is nothing to drain.
// No process is hinted: the pod's are gone, and the safety check's rule
// (docs/safety-check.md) looks for any that is not.
func (c *Core) DrainPath(ctx context.Context, path string) Outcome {
	var o Outcome
	switch np := c.Namespaces.Classify(path); np.Kind {
	case oci.NetnsProc:
		o.Action = Refused
		o.Err = fmt.Errorf("refusing to drain %s: it leads into /proc, which names a process, not a namespace, and may be stale", path)
		return o
	case oci.NetnsNsfs:
		path = np.Resolved
	default:
		o.Action, o.Reason = NothingToDrain, path+" is not a network namespace mount (already released)"
		return o
	}
	return c.openAndDrain(ctx, path, Hint{})
}

// DrainNamespace drains ns unless it is the host's or sockreap's own
// namespace, or (without Force) a live process still runs in it. The
// operator's drain passes Everyone, so that any process inside refuses it,
// and the process it named the namespace by, if any.
func (c *Core) DrainNamespace(ctx context.Context, ns *netns.NS, hint Hint) Outcome {
	return c.drain(ctx, ns, hint)
}

func (c *Core) openAndDrain(ctx context.Context, path string, hint Hint) Outcome {
	ns, err := c.Namespaces.Open(path)
	steptime.Mark("ns-open")
	if err != nil {
		return Outcome{}.fail(err)
	}
	defer ns.Close()
	return c.drain(ctx, ns, hint)
}

// check refuses the host's namespace and sockreap's own. The host's is
// looked at first: a hook runs in the host's namespace, and a container
// sharing it is in the host's, which is what the operator must hear. The
// warning is non-empty when the host's namespace could not be identified.
func (c *Core) check(id netns.ID) (warning string, err error) {
	return netns.CheckTargetWith(id, c.Namespaces.IsHost, c.Namespaces.Self)
}

// drainSlice is kept of a deadline for what follows the drain (releasing
// the pin, logging).
const drainSlice = 200 * time.Millisecond

func (c *Core) drain(ctx context.Context, ns *netns.NS, hint Hint) Outcome {
	o := Outcome{Netns: ns.ID.String()}
	c.progress(o)
	warning, err := c.check(ns.ID)
	steptime.Mark("ns-check")
	if err != nil {
		o.Action, o.Err = Refused, fmt.Errorf("refusing to drain %s: %w", ns.Path, err)
		return o
	}
	if warning != "" {
		o.warn("%s", warning)
	}
	// A forced drain destroys what processes outside hold too (no
	// Keep): looking for them would read every descriptor on the host.
	hint.NoHolders = c.Force
	occ, err := c.Occupancy.InUse(ctx, ns, hint)
	steptime.Mark("inuse")
	if err != nil {
		return o.fail(err)
	}
	o.Unreadable, o.Checked = occ.Unreadable, occ.Checked
	if len(occ.Procs) > 0 {
		o.Processes = occ.Procs
		if !c.Force {
			o.Action = SkippedShared
			o.Reason = "live processes still in the namespace (shared with another container): " + inuse.DescribeUsers(occ.Procs)
			return o
		}
	}
	if occ.Empty {
		// Most containers stop with nothing left: the check read the
		// namespace's counters already.
		o.Action, o.Report = Drained, &reap.Report{Netns: o.Netns, Left: []reap.Group{}}
		return o
	}
	opts := c.Options
	if !c.Force {
		opts.Keep = occ.Keep // sockets that processes outside hold
	}
	opts.Occupied = len(occ.Procs) > 0 // who owns sockets with an inode, for metrics
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		t := left - min(left/5, drainSlice)
		if t <= 0 {
			o.Action, o.Err = BudgetExceeded, fmt.Errorf("budget used up before the drain of %s could start", ns.ID)
			return o
		}
		if opts.Timeout <= 0 || t < opts.Timeout {
			opts.Timeout = t
		}
	}
	rep, err := c.Drainer.Drain(ctx, ns, opts)
	steptime.Mark("drain")
	o.Report = rep
	if err != nil {
		return o.fail(fmt.Errorf("drain %s: %w", ns.Path, err))
	}
	o.Action = Drained
	return o
}

// drainAndRelease drains the namespace pinned by p when that is safe, then
// releases the pin whatever the drain did.
func (c *Core) drainAndRelease(ctx context.Context, p *pin.Pin, hint Hint) Outcome {
	o := c.openAndDrain(ctx, p.Path, hint)
	o.Container, o.Pin = p.Container(), p.Path
	released, err := c.Pins.Release(p.ID)
	steptime.Mark("release")
	o.Released, o.Uncounted = released, uncounted(p, released)
	if err != nil {
		o.Err = errors.Join(o.Err, err)
		if o.Action != Refused && o.Action != BudgetExceeded {
			o.Action = Failed
		}
	}
	return o
}

// releaseLeftover drains and releases a pin createRuntime found in its
// way, but never one whose namespace still has live processes: that is
// someone's running container, and its own poststop needs the pin.
func (c *Core) releaseLeftover(ctx context.Context, p *pin.Pin) Outcome {
	// Everyone: a live process makes the pin someone's, sockets or not.
	// A leftover in the way is rare, so reading the host is affordable.
	hint := hintOf(p)
	hint.Everyone = true
	o := c.openAndDrain(ctx, p.Path, hint)
	o.Container, o.Pin = p.Container(), p.Path
	if o.Action == SkippedShared || o.Action == Refused {
		return o
	}
	released, err := c.Pins.Release(p.ID)
	o.Released, o.Uncounted = released, uncounted(p, released)
	if err != nil {
		o.Err = errors.Join(o.Err, err)
		if o.Action != BudgetExceeded {
			o.Action = Failed
		}
	}
	return o
}

// hintOf points an occupancy check at the process the pin was taken from.
func hintOf(p *pin.Pin) Hint {
	var h Hint
	if p != nil && p.Meta != nil && p.Meta.PID > 0 {
		h.PIDs = []int{p.Meta.PID}
	}
	return h
}

// poststopHint points the check at where the container's neighbours are
// likeliest: the state's pid, the pin's, the process whose namespace
// config.json joined (a pod's pause process, --network container:X), and
// the container's cgroup and, in a pod, the pod's.
func poststopHint(st *specs.State, p *pin.Pin, cfg *oci.Config) Hint {
	h := hintOf(p)
	if st.Pid > 0 {
		h.PIDs = append(h.PIDs, st.Pid)
	}
	if cfg != nil {
		h.PIDs = append(h.PIDs, inuse.PathPIDs(cfg.NetnsPath)...)
		h.Cgroups = inuse.CgroupHints(cfg.CgroupsPath)
	}
	return h
}
