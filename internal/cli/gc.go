package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sockreap/sockreap/internal/lifecycle"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/textsafe"
)

func init() {
	c := &Command{
		Name:    "gc",
		Summary: "release pins whose container is gone and whose namespace holds no process, draining them first",
		Usage:   "gc [--state-dir DIR] [--metrics-dir DIR] [--min-age D] [--timeout D] [--dry-run] [--json]",
	}
	c.Run = func(env *Env, args []string) error { return runGC(env, c, args) }
	Register(c)
}

// gcResult is what gc did with one pin.
type gcResult struct {
	Container string       `json:"container"`
	Netns     string       `json:"netns,omitempty"`
	Action    string       `json:"action"` // kept, released, would-release, nothing-to-do, failed
	Reason    string       `json:"reason"`
	Report    *reap.Report `json:"report,omitempty"`
	Error     string       `json:"error,omitempty"`
}

func runGC(env *Env, c *Command, args []string) error {
	var cf commonFlags
	fs := NewFlags(env, c)
	cf.add(fs)
	cf.addMetrics(fs)
	minAge := fs.Duration("min-age", time.Minute, "leave younger pins alone when the container's runtime state cannot be checked")
	timeout := fs.Duration("timeout", 0, "drain budget per namespace (default: budget from the config file, 2s)")
	dryRun := fs.Bool("dry-run", false, "say what would be released, change nothing")
	asJSON := fs.Bool("json", false, "print a JSON array of results")
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	o := cf.overrides()
	o.Budget = *timeout
	s := resolveWarn(env, o, "gc")
	store := pin.Store{Dir: s.cfg.StateDir}
	pins, err := store.List()
	if err != nil {
		return &Failure{Cmd: c.Name, Err: err}
	}
	core := s.core()
	var results []gcResult
	var events []metrics.DrainEvent
	failed, stale, now := 0, 0, time.Now()
	for _, p := range pins {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.BudgetDuration())
		out := core.Collect(ctx, p, lifecycle.CollectOptions{MinAge: *minAge, DryRun: *dryRun, Now: now})
		cancel()
		events = append(append(events, gcEvent(out)), pinnedRuns(out)...)
		if out.Action == lifecycle.Kept || out.Action == lifecycle.Failed {
			if gone, _ := core.Containers.Gone(p, *minAge, now); gone {
				stale++ // its container is gone, yet the pin stays
			}
		}
		r := gcResult{Container: out.Container, Netns: out.Netns, Action: string(out.Action), Reason: out.Reason, Report: out.Report}
		if out.Err != nil {
			r.Error = out.Err.Error()
		}
		if out.Action == lifecycle.Failed {
			failed++
		}
		if out.Action != lifecycle.Kept {
			attrs := []any{"stage", "gc", "container", r.Container, "netns", r.Netns, "reason", r.Reason}
			attrs = append(attrs, outcomeAttrs(out)...)
			if r.Error != "" {
				s.log.Error(out.Message(), append(attrs, "error", r.Error)...)
			} else {
				s.log.Info(out.Message(), attrs...)
			}
		}
		results = append(results, r)
	}
	if !*dryRun {
		// What hooks killed mid-release left beside their pins.
		if n, err := store.Sweep(); err != nil {
			s.log.Error("sweep pin metadata", "stage", "gc", "error", err.Error())
		} else if n > 0 {
			s.log.Info("swept leftover pin metadata and lock files", "stage", "gc", "files", n)
		}
	}
	mt, err := openMetrics(s.cfg)
	warnMetrics(env, c.Name, err)
	if mt != nil {
		warnMetrics(env, c.Name, recordGC(mt, s.cfg, events, stale, now, *dryRun))
	}
	if *asJSON {
		if results == nil {
			results = []gcResult{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
	} else {
		for _, r := range results {
			line := fmt.Sprintf("%-8s %s", r.Action, textsafe.Quote(r.Container))
			if r.Netns != "" {
				line += " (" + r.Netns + ")"
			}
			line += ": " + r.Reason
			if r.Report != nil {
				line += fmt.Sprintf("; drained: found %d, destroyed %d, remaining %d", r.Report.Found, r.Report.Destroyed, r.Report.Remaining)
			}
			if r.Error != "" {
				line += "; error: " + r.Error
			}
			fmt.Fprintln(env.Stdout, line)
		}
		if len(results) == 0 {
			fmt.Fprintf(env.Stdout, "no pins in %s\n", store.Dir)
		}
	}
	if failed > 0 {
		return Failf(c.Name, "%d of %d pins could not be collected (see above)", failed, len(pins))
	}
	return nil
}
