package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/reap"
)

// Action is what a drain did.
type Action string

// Actions.
const (
	Drained        Action = "drained"
	NothingToDrain Action = "nothing-to-drain"
	SkippedShared  Action = "skipped-shared"
	OptedOut       Action = "opted-out"
	Refused        Action = "refused"
	BudgetExceeded Action = "budget-exceeded"
	Failed         Action = "failed"
)

// Outcome is what one drain decided and did.
type Outcome struct {
	Action     Action
	Reason     string
	Netns      string
	Report     *reap.Report
	Processes  []netns.Proc
	Unreadable int
	Warnings   []string
	Err        error
}

// ReapDrainer drains with package reap directly, under the hook's rules.
type ReapDrainer struct {
	StateDir string
	Options  reap.Options
}

// DrainPath implements Drainer.
func (d ReapDrainer) DrainPath(ctx context.Context, path string) (o Outcome) {
	if oci.IsProcPath(path) {
		o.Action, o.Err = Refused, fmt.Errorf("refusing to drain %s: a /proc path names a process, not a namespace, and may be stale", path)
		return o
	}
	ns, err := netns.Open(path)
	if err != nil {
		if errors.Is(err, netns.ErrNotNetns) || errors.Is(err, fs.ErrNotExist) {
			o.Action, o.Reason = NothingToDrain, path+" is not a network namespace mount (already released)"
			return o
		}
		o.Action, o.Err = Failed, err
		return o
	}
	defer ns.Close()
	o.Netns = ns.ID.String()
	warning, err := netns.CheckTarget(ns.ID)
	if err != nil {
		o.Action, o.Err = Refused, fmt.Errorf("refusing to drain %s: %w", path, err)
		return o
	}
	if warning != "" {
		o.Warnings = append(o.Warnings, warning)
	}
	procs, unreadable, err := netns.Procs(ns.ID)
	if err != nil {
		o.Action, o.Err = Failed, err
		return o
	}
	o.Unreadable = unreadable
	if len(procs) > 0 {
		o.Action, o.Processes = SkippedShared, procs
		o.Reason = fmt.Sprintf("%d live processes still in the namespace", len(procs))
		return o
	}
	opts := d.Options
	if caps, err := reap.ProbeCached(d.StateDir); err == nil {
		opts.Caps = caps
	} else {
		o.Warnings = append(o.Warnings, "kernel probe: "+err.Error())
	}
	if dl, ok := ctx.Deadline(); ok {
		opts.Timeout = time.Until(dl)
	}
	o.Report, err = reap.Drain(ctx, ns, opts)
	o.Action = Drained
	if err != nil {
		o.Err = fmt.Errorf("drain %s: %w", path, err)
	}
	return o
}
