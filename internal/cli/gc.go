package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"golang.org/x/sys/unix"
)

func init() {
	c := &Command{
		Name:    "gc",
		Summary: "release pins whose container is gone and whose namespace holds no process, draining them first",
		Usage:   "gc [--state-dir DIR] [--min-age D] [--timeout D] [--dry-run] [--json]",
	}
	c.Run = func(env *Env, args []string) int { return runGC(env, c, args) }
	Register(c)
}

// gcResult is what gc did with one pin.
type gcResult struct {
	Container string       `json:"container"`
	Netns     string       `json:"netns,omitempty"`
	Action    string       `json:"action"` // kept, released, would release, failed
	Reason    string       `json:"reason"`
	Report    *reap.Report `json:"report,omitempty"`
	Error     string       `json:"error,omitempty"`
}

func runGC(env *Env, c *Command, args []string) int {
	var cf commonFlags
	fs := NewFlags(env, c)
	cf.add(fs)
	minAge := fs.Duration("min-age", time.Minute, "leave younger pins alone when the container's runtime state cannot be checked")
	timeout := fs.Duration("timeout", 0, "drain budget per namespace (default: budget from the config file, 2s)")
	dryRun := fs.Bool("dry-run", false, "say what would be released, change nothing")
	asJSON := fs.Bool("json", false, "print a JSON array of results")
	if code, done := Parse(env, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return Usagef(env, c.Name, "unexpected argument %q", fs.Arg(0))
	}
	s := cf.resolve(env)
	for _, p := range s.problems {
		fmt.Fprintf(env.Stderr, "%s gc: warning: %v\n", Prog, p)
	}
	if *timeout > 0 {
		s.budget = *timeout
	}
	pins, err := s.store.List()
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s gc: %v\n", Prog, err)
		return ExitUsage
	}
	var results []gcResult
	failed := false
	for _, p := range pins {
		r := gcOne(s, p, *minAge, *dryRun)
		if r.Action == "failed" {
			failed = true
		}
		if r.Action != "kept" {
			attrs := []any{"stage", "gc", "container", r.Container, "netns", r.Netns, "reason", r.Reason}
			if r.Report != nil {
				attrs = append(attrs, "report", r.Report)
			}
			if r.Error != "" {
				s.log.Error(r.Action, append(attrs, "error", r.Error)...)
			} else {
				s.log.Info(r.Action, attrs...)
			}
		}
		results = append(results, r)
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
			line := fmt.Sprintf("%-8s %s", r.Action, r.Container)
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
			fmt.Fprintf(env.Stdout, "no pins in %s\n", s.store.Dir)
		}
	}
	if failed {
		return ExitRemaining
	}
	return ExitOK
}

// gcOne decides about one pin and, unless dryRun, drains and releases it.
func gcOne(s *settings, p *pin.Pin, minAge time.Duration, dryRun bool) gcResult {
	r := gcResult{Container: p.ID, Action: "kept"}
	// Skip pins a hook is working on right now; the next run sees them.
	unlock, err := s.store.Lock(p.ID, false)
	if errors.Is(err, unix.EWOULDBLOCK) {
		r.Reason = "a hook is working on it"
		return r
	}
	if err != nil {
		r.Action, r.Error = "failed", err.Error()
		return r
	}
	defer unlock()
	if p, err = s.store.Get(p.ID); err != nil {
		r.Reason = "released meanwhile"
		return r
	}
	release := func(reason string) gcResult {
		r.Reason = reason
		if dryRun {
			r.Action = "would release"
			return r
		}
		if _, err := s.store.Release(p.ID); err != nil {
			r.Action, r.Error = "failed", err.Error()
			return r
		}
		r.Action = "released"
		return r
	}
	if !p.Mounted {
		return release("stale: the pin is no longer a namespace mount")
	}
	r.Netns = p.NS.String()
	procs, _, err := netns.Procs(p.NS)
	if err != nil {
		r.Action, r.Error = "failed", err.Error()
		return r
	}
	if len(procs) > 0 {
		r.Reason = "in use by " + describeProcs(procs)
		return r
	}
	gone, why := containerGone(p, minAge)
	if !gone {
		r.Reason = why
		return r
	}
	if dryRun {
		r.Action, r.Reason = "would release", why+"; would drain first"
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.budget)
	defer cancel()
	rec := &record{}
	_, derr := drainAndRelease(ctx, s, p, rec)
	r.Report = rec.report
	r.Reason = why
	if derr != nil {
		r.Action, r.Error = "failed", derr.Error()
		if _, err := os.Lstat(p.Path); errors.Is(err, fs.ErrNotExist) {
			r.Action = "released" // the pin is gone; only the drain failed
		}
		return r
	}
	r.Action = "released"
	return r
}

// containerGone tells whether the pin's container no longer exists, and why
// (or why that cannot be said yet).
func containerGone(p *pin.Pin, minAge time.Duration) (bool, string) {
	m := p.Meta
	if m != nil && m.RuntimeState != "" {
		if _, err := os.Stat(m.RuntimeState); err == nil {
			return false, "the runtime still has the container (" + m.RuntimeState + "); its delete releases the pin"
		}
		return true, "container gone (runtime state " + m.RuntimeState + " removed)"
	}
	if m != nil && m.Bundle != "" {
		if _, err := os.Stat(oci.ConfigPath(m.Bundle)); errors.Is(err, fs.ErrNotExist) {
			return true, "container gone (bundle " + m.Bundle + " removed)"
		}
	}
	if m != nil { // without metadata the age is unknown: old enough
		if age := p.Age(time.Now()); age < minAge {
			return false, fmt.Sprintf("no process inside but only %s old (--min-age %s)", age.Round(time.Second), minAge)
		}
	}
	return true, "no process inside and the container's runtime state is unknown"
}
