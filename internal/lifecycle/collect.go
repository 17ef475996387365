package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/pin"
	"golang.org/x/sys/unix"
)

// CollectOptions tune Collect.
type CollectOptions struct {
	// MinAge leaves younger pins alone when their container's runtime
	// state cannot be checked.
	MinAge time.Duration
	DryRun bool      // decide, change nothing (WouldRelease)
	Now    time.Time // zero: time.Now()
}

// Collect decides about one pin found in the store (gc): it is released —
// drained first when its namespace is still there — once its container is
// gone and no process is left inside; otherwise it is kept. A pin a hook
// is working on is left for the next run.
func (c *Core) Collect(ctx context.Context, p *pin.Pin, opts CollectOptions) Outcome {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	o := Outcome{Container: p.Container(), Action: Kept, Pin: p.Path}
	unlock, err := c.Pins.Lock(p.ID, false)
	if errors.Is(err, unix.EWOULDBLOCK) {
		o.Reason = "a hook is working on it"
		return o
	}
	if err != nil {
		return o.fail(err)
	}
	defer unlock()
	p, err = c.Pins.Get(p.ID)
	if errors.Is(err, pin.ErrNoPin) {
		o.Action, o.Reason = NothingToDo, "released meanwhile"
		return o
	}
	if err != nil {
		return o.fail(err)
	}
	release := func(reason string) Outcome {
		o.Reason = reason
		if opts.DryRun {
			o.Action = WouldRelease
			return o
		}
		released, err := c.Pins.Release(p.ID)
		if err != nil {
			return o.fail(err)
		}
		o.Action, o.Released, o.Uncounted = Released, released, uncounted(p, released)
		return o
	}
	if !p.Mounted {
		return release("stale: the pin is no longer a namespace mount")
	}
	o.Netns = p.NS.String()
	ns, err := c.Namespaces.Open(p.Path)
	if err != nil {
		return o.fail(err)
	}
	defer ns.Close()
	occ, err := c.Occupancy.InUse(ctx, ns, hintOf(p))
	if err != nil {
		return o.fail(err)
	}
	if len(occ.Procs) > 0 {
		o.Processes = occ.Procs
		o.Reason = "in use by " + inuse.DescribeUsers(occ.Procs)
		return o
	}
	gone, why := c.Containers.Gone(p, opts.MinAge, opts.Now)
	if !gone {
		o.Reason = why
		return o
	}
	if opts.DryRun {
		o.Action, o.Reason = WouldRelease, why+"; would drain first"
		return o
	}
	d := c.drain(ctx, ns, hintOf(p))
	o.Report, o.Warnings, o.Err = d.Report, d.Warnings, d.Err
	released, rerr := c.Pins.Release(p.ID)
	o.Released, o.Uncounted = released, uncounted(p, released)
	o.Err = errors.Join(o.Err, rerr)
	o.Reason = why
	switch {
	case d.Action == SkippedShared:
		// A process entered between the two looks: the pin goes (its
		// container is gone), the namespace lives on with that process.
		o.Action, o.Reason = Released, why+"; not drained: "+d.Reason
	case rerr != nil:
		o.Action = Failed
	default:
		o.Action = Released // a drain error is in Err; the pin is gone
	}
	return o
}
