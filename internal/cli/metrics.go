package cli

import (
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/dyingns"
	"github.com/sockreap/sockreap/internal/lifecycle"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
)

func init() {
	c := &Command{
		Name:    "stats",
		Summary: "print sockreap's metrics on this node: drains, sockets, failures, pins (what node_exporter serves)",
		Usage:   "stats [--config FILE] [--metrics-dir DIR] [--prom]",
	}
	c.Run = func(env *Env, args []string) error { return runStats(env, c, args) }
	Register(c)
}

// addMetrics adds --metrics-dir.
func (f *commonFlags) addMetrics(fs *flag.FlagSet) {
	fs.Var(&f.metricsDir, "metrics-dir", "node_exporter textfile directory for sockreap.prom (default "+config.DefaultMetricsDir+
		", or $"+config.EnvMetrics+", or metrics_dir in the config file; \"\" or a missing directory turns metrics off)")
}

// setString is a string flag that knows whether it was given, so that an
// empty value can mean "off" rather than "the default".
type setString struct {
	value string
	set   bool
}

func (s *setString) String() string { return s.value }

func (s *setString) Set(v string) error {
	s.value, s.set = v, true
	return nil
}

// openMetrics is the textfile sink of the resolved metrics directory,
// nil when metrics are off: no directory configured, or none there (no
// node_exporter on this node). A directory that is there but cannot be
// used is an error, for the caller to warn about.
func openMetrics(cfg *config.Config) (*metrics.Textfile, error) {
	if cfg.MetricsDir == "" {
		return nil, nil
	}
	t, err := metrics.OpenTextfile(cfg.MetricsDir)
	if errors.Is(err, metrics.ErrNoDir) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Running markers on the state directory's tmpfs: cheaper than the
	// textfile directory's disk.
	t.RunDir = filepath.Join(cfg.StateDir, "metrics-running")
	return t, nil
}

// warnMetrics prints a metrics problem of an operator command.
func warnMetrics(env *Env, cmd string, err error) {
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: warning: metrics: %v\n", Prog, cmd, err)
	}
}

// outcomeName is an outcome's action for the outcome label.
func outcomeName(o lifecycle.Outcome) string {
	if o.Action == "" {
		return string(lifecycle.Failed)
	}
	return string(o.Action)
}

// recordStage books a hook stage run and the pins left after it.
func recordStage(t *metrics.Textfile, cfg *config.Config, stage string, out lifecycle.Outcome, d time.Duration, failed bool) error {
	ev := metrics.DrainEvent{Frontend: metrics.FrontendHook, Stage: stage, Outcome: outcomeName(out),
		StageDuration: d, Report: out.Report, Failed: failed}
	var g metrics.Gauges
	if n, err := (pin.Store{Dir: cfg.StateDir}).Count(); err == nil {
		g.Pins = metrics.Int(n)
	}
	return t.Update(func(r *metrics.Recorder) {
		r.Record(ev)
		for _, run := range pinnedRuns(out) {
			r.Record(run)
		}
		r.SetGauges(g)
	})
}

// pinnedRuns are the createRuntime runs recorded in the pins out released
// (its own and a replaced leftover's: pin.Meta.Uncounted), counted now as
// what they were: runs that pinned.
func pinnedRuns(out lifecycle.Outcome) []metrics.DrainEvent {
	var evs []metrics.DrainEvent
	for _, o := range []*lifecycle.Outcome{&out, out.Leftover} {
		if o != nil && o.Uncounted != nil {
			evs = append(evs, metrics.DrainEvent{Frontend: metrics.FrontendHook, Stage: string(oci.StageCreateRuntime),
				Outcome: string(lifecycle.Pinned), StageDuration: time.Duration(o.Uncounted.DurationUS) * time.Microsecond})
		}
	}
	return evs
}

// gcEvent is what one pin gc looked at counts for: a drain when it drained
// (or failed), a release when the pin went.
func gcEvent(out lifecycle.Outcome) metrics.DrainEvent {
	ev := metrics.DrainEvent{Frontend: metrics.FrontendGC, Report: out.Report, Released: out.Released && out.Action == lifecycle.Released,
		Failed: out.Action == lifecycle.Failed}
	switch {
	case out.Report != nil && out.Err != nil, out.Action == lifecycle.Failed:
		ev.Outcome = string(lifecycle.Failed)
	case out.Report != nil:
		ev.Outcome = string(lifecycle.Drained)
	default:
		ev.Outcome = string(out.Action)
	}
	return ev
}

// nodeGauges are the figures gc and doctor refresh: the kernel's
// capabilities (the probe cache) and the dying namespaces.
func nodeGauges(stateDir string, shrink bool) (metrics.Gauges, *dyingns.Census, error) {
	var g metrics.Gauges
	if caps, err := reap.ProbeCached(stateDir); err == nil {
		g.Kernel = caps
	}
	c, err := dyingns.Count(dyingns.Options{Shrink: shrink})
	if err != nil {
		return g, nil, err
	}
	g.DyingNetns, g.DyingNetnsUpper = metrics.Int(c.Lower), metrics.Int(c.Upper)
	return g, &c, nil
}

func runStats(env *Env, c *Command, args []string) error {
	var cf commonFlags
	fs := NewFlags(env, c)
	fs.StringVar(&cf.configPath, "config", "", "configuration file (default "+config.DefaultPath+", or $"+config.EnvConfig+")")
	cf.addMetrics(fs)
	prom := fs.Bool("prom", false, "print the exposition node_exporter serves (sockreap.prom) instead of tables")
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	o := cf.overrides()
	o.LogFile = os.DevNull
	s := resolveWarn(env, o, "stats")
	dir := s.cfg.MetricsDir
	if dir == "" {
		return Usagef(c.Name, "metrics are off (metrics_dir = \"\" in %s); give --metrics-dir DIR", s.cfg.Path)
	}
	if _, err := os.Stat(dir); errors.Is(err, iofs.ErrNotExist) {
		return Usagef(c.Name, "no metrics directory %s: install node_exporter (its textfile directory) or give --metrics-dir DIR", dir)
	}
	r, err := metrics.Load(dir)
	if err != nil {
		return Failf(c.Name, "%v", err)
	}
	if *prom {
		return r.WriteText(env.Stdout)
	}
	fmt.Fprintf(env.Stdout, "metrics in %s\n", dir)
	return r.WriteSummary(env.Stdout)
}

// recordGC books gc's run: each pin's event (not for a dry run), the pins
// left and the stale ones, and the node's gauges.
func recordGC(t *metrics.Textfile, cfg *config.Config, events []metrics.DrainEvent, stale int, now time.Time, dryRun bool) error {
	g, _, err := nodeGauges(cfg.StateDir, cfg.DyingNetnsExact)
	if n, cerr := (pin.Store{Dir: cfg.StateDir}).Count(); cerr == nil {
		g.Pins = metrics.Int(n)
	}
	g.PinsStale, g.GCRun = metrics.Int(stale), &now
	uerr := t.Update(func(r *metrics.Recorder) {
		if !dryRun {
			for _, ev := range events {
				r.Record(ev)
			}
		}
		r.SetGauges(g)
	})
	return errors.Join(uerr, err)
}
