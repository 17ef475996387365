package cli

// The OCI hook stages. What a stage does is decided by the lifecycle core
// (internal/lifecycle: createRuntime pins, poststop drains and releases);
// this file reads the state, runs the core under the stage's budget and
// writes the one log line. Every stage fails open: it logs what went wrong
// and exits 0 unless --strict, because a failing hook fails the
// container's start or delete.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/lifecycle"
	"github.com/sockreap/sockreap/internal/logging"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/steptime"
	"golang.org/x/sys/unix"
)

// stageFunc is a stage's decision: a method of the lifecycle core.
type stageFunc func(core *lifecycle.Core, ctx context.Context, st *specs.State) lifecycle.Outcome

// KnownStages are the OCI hook stages sockreap-hook accepts.
var KnownStages = oci.Stages

func init() {
	registerStage(oci.StageCreateRuntime, []string{string(oci.StagePrestart)}, "pin the container's network namespace (state JSON on stdin)", (*lifecycle.Core).CreateRuntime)
	registerStage(oci.StagePoststop, nil, "drain the container's network namespace and release its pin (state JSON on stdin)", (*lifecycle.Core).Poststop)
	for _, stage := range []oci.Stage{oci.StageCreateContainer, oci.StageStartContainer, oci.StagePoststart} {
		registerStage(stage, nil, "accepted; does nothing", nil)
	}
}

func registerStage(stage oci.Stage, aliases []string, summary string, fn stageFunc) {
	name := string(stage)
	c := &Command{Name: name, Aliases: aliases, Summary: summary, Stage: true,
		Usage: name + " [--config FILE] [--state-dir DIR] [--log FILE] [--metrics-dir DIR] [--timeout D] [--strict] < state.json"}
	c.Run = func(env *Env, args []string) error { return runStage(env, c, stage, args, fn) }
	Register(c)
}

// settings are the resolved configuration of one run and its log.
type settings struct {
	cfg *config.Config
	log *slog.Logger
	// problems found while resolving (bad config file, unusable log
	// file); they are logged, and fail the run only with --strict.
	problems []error
}

// commonFlags are the flags every stage, gc and pins share.
type commonFlags struct {
	configPath, stateDir, logFile string
	metricsDir                    setString
}

func (f *commonFlags) add(fs *flag.FlagSet) {
	f.addConfig(fs)
	fs.StringVar(&f.logFile, "log", "", "log file, one JSON line per run (default "+config.DefaultLogFile+", or $"+config.EnvLogFile+")")
}

// addConfig adds --config and --state-dir.
func (f *commonFlags) addConfig(fs *flag.FlagSet) {
	fs.StringVar(&f.configPath, "config", "", "configuration file (default "+config.DefaultPath+", or $"+config.EnvConfig+")")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory holding the pins and the kernel probe cache (default "+config.DefaultStateDir+", or $"+config.EnvStateDir+")")
}

func (f *commonFlags) overrides() config.Overrides {
	return config.Overrides{Path: f.configPath, StateDir: f.stateDir, LogFile: f.logFile,
		MetricsDir: f.metricsDir.value, MetricsOff: f.metricsDir.set && f.metricsDir.value == ""}
}

// resolve resolves the settings (config.Resolve) and opens the log. It
// never fails: what goes wrong is collected in problems and the defaults
// stand in.
func resolve(env *Env, o config.Overrides) *settings {
	s := &settings{}
	cfg, err := config.Resolve(o, os.Getenv)
	if err != nil {
		s.problems = append(s.problems, err)
	}
	s.cfg = cfg
	steptime.Mark("settings")
	log, _, err := logging.Open(cfg.LogFile, slog.LevelInfo, env.Stderr)
	steptime.Mark("log-open")
	if err != nil {
		s.problems = append(s.problems, fmt.Errorf("%w (logging to stderr)", err))
	}
	// The log file stays open until the process exits: each run is short.
	s.log = log
	return s
}

// resolveWarn is resolve for a command run by hand: each problem is
// printed as a warning naming the command, and the defaults stand in.
func resolveWarn(env *Env, o config.Overrides, command string) *settings {
	s := resolve(env, o)
	for _, p := range s.problems {
		fmt.Fprintf(env.Stderr, "%s %s: warning: %v\n", Prog, command, p)
	}
	return s
}

// core is the lifecycle core with these settings.
func (s *settings) core() *lifecycle.Core {
	return lifecycle.New(s.cfg.StateDir, s.cfg.DrainOptions(0))
}

// effectiveBudget is the stage budget, shrunk to fit inside the OCI hook
// timeout (seconds, 0 = none) with headroom for starting and exiting.
func effectiveBudget(budget time.Duration, ociTimeout int) time.Duration {
	if ociTimeout <= 0 {
		return budget
	}
	t := time.Duration(ociTimeout) * time.Second
	t -= min(t/5, 500*time.Millisecond)
	return min(budget, t)
}

// watch keeps what is known of a run's outcome for the budget watchdog:
// the run's goroutine reports progress while the watchdog may read it.
type watch struct {
	mu   sync.Mutex
	last lifecycle.Outcome
}

func (w *watch) progress(o lifecycle.Outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last.Container = o.Container
	if o.Netns != "" {
		w.last.Netns = o.Netns
	}
	if o.Pin != "" {
		w.last.Pin = o.Pin
	}
}

// abandoned is what the watchdog logs when the budget runs out: what is
// known of the run so far.
func (w *watch) abandoned(err error) lifecycle.Outcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	return lifecycle.Outcome{Container: w.last.Container, Netns: w.last.Netns, Pin: w.last.Pin,
		Action: lifecycle.BudgetExceeded, Err: err}
}

func runStage(env *Env, c *Command, stage oci.Stage, args []string, fn stageFunc) error {
	start := time.Now()
	var (
		cf         commonFlags
		timeout    time.Duration
		ociTimeout int
		strict     bool
	)
	fs := NewFlags(env, c)
	cf.add(fs)
	cf.addMetrics(fs)
	fs.DurationVar(&timeout, "timeout", 0, "budget: the longest the stage may take (default 2s, or budget in the config file)")
	fs.IntVar(&ociTimeout, strings.TrimPrefix(oci.OCITimeoutFlag, "--"), 0, "the hook's OCI timeout in seconds, written by 'configure'; the budget stays inside it")
	fs.BoolVar(&strict, "strict", false, "exit non-zero when the stage fails (default: log and exit 0, so the container's start or delete goes on)")
	if done, err := Parse(env, fs, args); done {
		if err != nil && !strictArg(args) {
			// A hook with a bad flag must not break the container.
			s := resolve(env, cf.overrides())
			s.log.Error("bad hook arguments; run '"+Prog+" "+string(stage)+" --help'",
				"stage", stage, "args", args, "error", "invalid flags (see the runtime's hook configuration)")
			return nil
		}
		return err
	}
	steptime.Mark("flags")
	o := cf.overrides()
	o.Budget = timeout
	if flagSet(fs, "strict") {
		o.Strict = &strict
	}
	s := resolve(env, o)
	budget := effectiveBudget(s.cfg.BudgetDuration(), ociTimeout)
	var (
		mt    *metrics.Textfile
		mtErr error
	)
	if fn != nil { // stages that do nothing are not worth a metric
		mt, mtErr = openMetrics(s.cfg)
	}
	if mt != nil {
		mt.Begin(string(stage)) // if the runtime kills this process, the next hook counts it
	}
	steptime.Mark("metrics-begin")

	w := &watch{}
	core := s.core()
	core.Progress = w.progress
	// One metrics update per container: a clean pin leaves its count to
	// whoever releases it. Not with problems to report, which are
	// counted now as a failed run.
	core.DeferCount, core.Started = mt != nil && len(s.problems) == 0, start
	steptime.Mark("core")
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(budget))
	defer cancel()
	done2 := make(chan lifecycle.Outcome, 1)
	go func() {
		done2 <- func() (out lifecycle.Outcome) {
			// A bug here must not fail the container's start or
			// delete: a panic becomes an error, logged like any other.
			defer func() {
				if r := recover(); r != nil {
					out.Action, out.Err = lifecycle.Failed, fmt.Errorf("internal error (please report): %v", r)
				}
			}()
			st, err := oci.ReadState(env.Stdin)
			steptime.Mark("state")
			if err != nil {
				return lifecycle.Outcome{Action: lifecycle.Failed, Err: badInput{err}}
			}
			w.progress(lifecycle.Outcome{Container: st.ID})
			if fn == nil {
				return lifecycle.Outcome{Container: st.ID, Action: lifecycle.NothingToDo}
			}
			return fn(core, ctx, st)
		}()
	}()
	var out lifecycle.Outcome
	select {
	case out = <-done2:
	case <-ctx.Done():
		// Never hold the runtime up past the budget: whatever is left
		// (a pin, at worst) is for gc.
		out = w.abandoned(fmt.Errorf("stage did not finish within its budget of %s; exiting (gc releases what is left)", budget))
	}
	steptime.Mark("handoff")
	var problems []error
	for _, p := range s.problems {
		problems = append(problems, badInput{p})
	}
	err := errors.Join(append(problems, out.Err)...)
	switch {
	case mt != nil && out.CountDeferred:
		mt.End() // counted when the pin is released
	case mt != nil:
		// Other hooks' updates queue on one lock: wait no longer than
		// the budget's end (a moment, when it is spent already), so the
		// runtime never kills the hook for its metrics.
		mt.LockWait = max(time.Until(start.Add(budget)), metricsMinWait)
		mtErr = recordStage(mt, s.cfg, string(stage), out, time.Since(start), err != nil)
	}
	if mtErr != nil {
		out.Warnings = append(out.Warnings, "metrics: "+mtErr.Error())
	}
	steptime.Mark("metrics")
	logStage(s.log, stage, out, time.Since(start), budget, err)
	steptime.Mark("log-write")
	steptime.Flush(string(stage))
	switch {
	case err == nil || !s.cfg.Strict:
		return nil // fail open
	case errors.As(err, new(badInput)):
		// The configuration or the state on stdin is at fault.
		return &UsageError{Cmd: string(stage), Err: err}
	}
	return &Failure{Cmd: string(stage), Err: err}
}

// metricsMinWait is the least a stage waits for the metrics lock.
const metricsMinWait = 100 * time.Millisecond

// badInput marks a stage error caused by its input (the state on stdin,
// the configuration file): with --strict it exits 2, not 3.
type badInput struct{ error }

func (b badInput) Unwrap() error { return b.error }

// strictArg reports whether args ask for strict mode (--strict,
// --strict=true; not --strict=false), for arguments that failed to parse.
func strictArg(args []string) bool {
	strict := false
	for _, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "strict" {
			continue
		}
		if !hasVal {
			strict = true
			continue
		}
		b, err := strconv.ParseBool(val)
		strict = err != nil || b // a malformed value errs on the side of strict
	}
	return strict
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func logStage(log *slog.Logger, stage oci.Stage, out lifecycle.Outcome, d, budget time.Duration, err error) {
	attrs := []any{
		"stage", stage,
		"container", out.Container,
		"netns", out.Netns,
		"duration_ms", float64(d.Microseconds()) / 1000,
		"budget_ms", budget.Milliseconds(),
	}
	attrs = append(attrs, outcomeAttrs(out)...)
	if out.Leftover != nil {
		attrs = append(attrs, slog.Group("leftover", outcomeAttrs(*out.Leftover)...))
	}
	msg := out.Message()
	if err != nil {
		attrs = append(attrs, "error", err.Error())
		log.Error(msg, attrs...)
		return
	}
	if len(out.Warnings) > 0 {
		log.Warn(msg, attrs...)
		return
	}
	log.Info(msg, attrs...)
}

// outcomeAttrs are the log attributes of an outcome beyond stage,
// container and namespace.
func outcomeAttrs(o lifecycle.Outcome) []any {
	attrs := []any{"action", string(o.Action)}
	if o.Pin != "" {
		attrs = append(attrs, "pin", o.Pin)
	}
	if o.Report != nil {
		attrs = append(attrs, "report", o.Report)
	}
	if len(o.Processes) > 0 {
		attrs = append(attrs, "processes", o.Processes)
	}
	if o.Checked != "" {
		attrs = append(attrs, "checked", o.Checked)
	}
	if o.Unreadable > 0 {
		attrs = append(attrs, "unreadable_processes", o.Unreadable)
	}
	if len(o.Warnings) > 0 {
		attrs = append(attrs, "warnings", o.Warnings)
	}
	return attrs
}

// RunUnknownStage handles a name that is neither a command nor a known
// stage. When stdin holds an OCI state, sockreap-hook runs as a hook wired
// to a stage this version does not know: it logs that and exits 0 (with
// --strict a usage error, 2), so the container's start or delete goes on. Otherwise
// handled is false and the caller reports an unknown command as usual.
func RunUnknownStage(env *Env, name string, args []string) (handled bool, err error) {
	if f, ok := env.Stdin.(*os.File); !ok || isTerminal(f) {
		return false, nil
	}
	// A hook's stdin is the state the runtime wrote and closed; anything
	// that does not deliver one promptly is no hook.
	type result struct {
		st  *specs.State
		err error
	}
	rc := make(chan result, 1)
	go func() { st, err := oci.ReadState(env.Stdin); rc <- result{st, err} }()
	var st *specs.State
	select {
	case r := <-rc:
		if r.err != nil {
			return false, nil
		}
		st = r.st
	case <-time.After(time.Second):
		return false, nil
	}
	var cf commonFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(nilWriter{})
	cf.add(fs)
	strict := fs.Bool("strict", false, "")
	_ = fs.Int(strings.TrimPrefix(oci.OCITimeoutFlag, "--"), 0, "")
	_ = fs.Duration("timeout", 0, "")
	parseErr := fs.Parse(args)
	o := cf.overrides()
	if parseErr == nil && flagSet(fs, "strict") {
		o.Strict = strict
	} else if parseErr != nil && strictArg(args) {
		o.Strict = &[]bool{true}[0]
	}
	s := resolve(env, o)
	known := make([]string, len(KnownStages))
	for i, k := range KnownStages {
		known[i] = string(k)
	}
	msg := fmt.Sprintf("unknown stage %q: nothing done; known stages: %s", name, strings.Join(known, ", "))
	s.log.Error("unknown stage", "stage", name, "container", st.ID, "error", msg)
	if s.cfg.Strict {
		return true, &UsageError{Err: errors.New(msg)}
	}
	return true, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }
