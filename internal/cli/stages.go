package cli

// The OCI hook stages. createRuntime pins the container's network namespace
// while its init process is alive; poststop finds it again (the pin, or a
// namespace mount named in config.json), drains it and releases the pin.
// Every stage fails open: it logs what went wrong and exits 0 unless
// --strict, because a failing hook fails the container's start or delete.

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
	"github.com/sockreap/sockreap/internal/logging"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/reap"
	"golang.org/x/sys/unix"
)

// stageFunc does a stage's work on the parsed state and fills in rec.
type stageFunc func(ctx context.Context, s *settings, st *specs.State, rec *record) error

// KnownStages are the OCI hook stages sockreap-hook accepts.
var KnownStages = []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}

func init() {
	registerStage("createRuntime", []string{"prestart"}, "pin the container's network namespace (state JSON on stdin)", stageCreateRuntime)
	registerStage("poststop", nil, "drain the container's network namespace and release its pin (state JSON on stdin)", stagePoststop)
	for _, name := range []string{"createContainer", "startContainer", "poststart"} {
		registerStage(name, nil, "accepted; does nothing", nil)
	}
}

func registerStage(name string, aliases []string, summary string, fn stageFunc) {
	c := &Command{Name: name, Aliases: aliases, Summary: summary, Stage: true,
		Usage: name + " [--config FILE] [--state-dir DIR] [--log FILE] [--timeout D] [--strict] < state.json"}
	c.Run = func(env *Env, args []string) int { return runStage(env, c, name, args, fn) }
	Register(c)
}

// settings are the resolved configuration of one run: flags over
// environment over config file over defaults.
type settings struct {
	cfg    *config.Config
	store  pin.Store
	strict bool
	budget time.Duration
	log    *slog.Logger
	// problems found while resolving (bad config file, unusable log
	// file); they are logged, and fail the run only with --strict.
	problems []error
}

// commonFlags are the flags every stage and the pin commands share.
type commonFlags struct {
	configPath, stateDir, logFile string
}

func (f *commonFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.configPath, "config", "", "configuration file (default "+config.DefaultPath+", or $"+config.EnvConfig+")")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory holding the pins (default "+config.DefaultStateDir+", or $"+config.EnvStateDir+")")
	fs.StringVar(&f.logFile, "log", "", "log file, one JSON line per run (default "+config.DefaultLogFile+", or $"+config.EnvLogFile+")")
}

// resolve loads the configuration and opens the log. It never fails: what
// goes wrong is collected in problems and the defaults stand in.
func (f *commonFlags) resolve(env *Env) *settings {
	s := &settings{}
	path, required := f.configPath, f.configPath != ""
	if !required {
		if v := os.Getenv(config.EnvConfig); v != "" {
			path, required = v, true
		} else {
			path = config.DefaultPath
		}
	}
	cfg, err := config.Load(path, required)
	if err != nil {
		s.problems = append(s.problems, fmt.Errorf("%w (using the defaults)", err))
	}
	cfg.ApplyEnv(os.Getenv)
	if f.stateDir != "" {
		cfg.StateDir = f.stateDir
	}
	if f.logFile != "" {
		cfg.LogFile = f.logFile
	}
	s.cfg = cfg
	s.store = pin.Store{Dir: cfg.StateDir}
	s.strict = cfg.Strict
	s.budget = cfg.BudgetDuration()
	log, _, err := logging.Open(cfg.LogFile, slog.LevelInfo, env.Stderr)
	if err != nil {
		s.problems = append(s.problems, fmt.Errorf("%w (logging to stderr)", err))
	}
	// The log file stays open until the process exits: each run is short.
	s.log = log
	return s
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

// record is the one log line a stage run writes.
type record struct {
	container string
	netns     string
	pin       string
	action    string // what was done, in words
	report    *reap.Report
	procs     []netns.Proc
	// unreadable counts processes whose namespace could not be checked
	// (pid 1 in some sandboxes): recorded, not warned about on every run.
	unreadable int
	warnings   []string

	// mu guards container, netns and pin: the run's goroutine sets them
	// while the budget watchdog may read them.
	mu sync.Mutex
}

func (r *record) set(field *string, v string) {
	r.mu.Lock()
	*field = v
	r.mu.Unlock()
}

// abandoned is what the watchdog logs when the budget runs out: what is
// known of the run so far.
func (r *record) abandoned() *record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &record{container: r.container, netns: r.netns, pin: r.pin, action: "abandoned at the budget"}
}

func (r *record) warn(format string, a ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, a...))
}

func runStage(env *Env, c *Command, stage string, args []string, fn stageFunc) int {
	start := time.Now()
	var (
		cf         commonFlags
		timeout    time.Duration
		ociTimeout int
		strict     bool
	)
	fs := NewFlags(env, c)
	cf.add(fs)
	fs.DurationVar(&timeout, "timeout", 0, "budget: the longest the stage may take (default 2s, or budget in the config file)")
	fs.IntVar(&ociTimeout, strings.TrimPrefix(oci.OCITimeoutFlag, "--"), 0, "the hook's OCI timeout in seconds, written by 'configure'; the budget stays inside it")
	fs.BoolVar(&strict, "strict", false, "exit non-zero when the stage fails (default: log and exit 0, so the container's start or delete goes on)")
	code, done := Parse(env, fs, args)
	if done {
		if code == ExitUsage && !hasFlag(args, "strict") {
			// A hook with a bad flag must not break the container.
			s := cf.resolve(env)
			s.log.Error("bad hook arguments; run '"+Prog+" "+stage+" --help'",
				"stage", stage, "args", args, "error", "invalid flags (see the runtime's hook configuration)")
			return ExitOK
		}
		return code
	}
	s := cf.resolve(env)
	if strict {
		s.strict = true
	}
	if timeout > 0 {
		s.budget = timeout
	}
	s.budget = effectiveBudget(s.budget, ociTimeout)

	rec := &record{}
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(s.budget))
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- func() (err error) {
			// A bug here must not fail the container's start or
			// delete: a panic becomes an error, logged like any other.
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("internal error (please report): %v", r)
				}
			}()
			st, err := oci.ReadState(env.Stdin)
			if err != nil {
				return err
			}
			rec.set(&rec.container, st.ID)
			if fn == nil {
				rec.action = "nothing to do at this stage"
				return nil
			}
			return fn(ctx, s, st, rec)
		}()
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		// Never hold the runtime up past the budget: whatever is left
		// (a pin, at worst) is for gc.
		err = fmt.Errorf("stage did not finish within its budget of %s; exiting (gc releases what is left)", s.budget)
		rec = rec.abandoned()
	}
	err = errors.Join(append(s.problems, err)...)
	logStage(s.log, stage, rec, time.Since(start), s.budget, err)
	if err != nil && s.strict {
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", Prog, stage, err)
		return ExitRemaining
	}
	return ExitOK
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "-"+name || a == "--"+name || strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}

func logStage(log *slog.Logger, stage string, rec *record, d, budget time.Duration, err error) {
	attrs := []any{
		"stage", stage,
		"container", rec.container,
		"netns", rec.netns,
		"duration_ms", float64(d.Microseconds()) / 1000,
		"budget_ms", budget.Milliseconds(),
	}
	if rec.pin != "" {
		attrs = append(attrs, "pin", rec.pin)
	}
	if rec.report != nil {
		attrs = append(attrs, "report", rec.report)
	}
	if len(rec.procs) > 0 {
		attrs = append(attrs, "processes", rec.procs)
	}
	if rec.unreadable > 0 {
		attrs = append(attrs, "unreadable_processes", rec.unreadable)
	}
	if len(rec.warnings) > 0 {
		attrs = append(attrs, "warnings", rec.warnings)
	}
	msg := rec.action
	if msg == "" {
		msg = "failed"
	}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
		log.Error(msg, attrs...)
		return
	}
	if len(rec.warnings) > 0 {
		log.Warn(msg, attrs...)
		return
	}
	log.Info(msg, attrs...)
}

// RunUnknownStage handles a name that is neither a command nor a known
// stage. When stdin holds an OCI state, sockreap-hook runs as a hook wired
// to a stage this version does not know: it logs that and exits 0 (2 with
// --strict), so the container's start or delete goes on. Otherwise
// handled is false and the caller reports an unknown command as usual.
func RunUnknownStage(env *Env, name string, args []string) (code int, handled bool) {
	if f, ok := env.Stdin.(*os.File); !ok || isTerminal(f) {
		return 0, false
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
			return 0, false
		}
		st = r.st
	case <-time.After(time.Second):
		return 0, false
	}
	var cf commonFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(nilWriter{})
	cf.add(fs)
	strict := fs.Bool("strict", false, "")
	_ = fs.Int(strings.TrimPrefix(oci.OCITimeoutFlag, "--"), 0, "")
	_ = fs.Duration("timeout", 0, "")
	_ = fs.Parse(args)
	s := cf.resolve(env)
	msg := fmt.Sprintf("unknown stage %q: nothing done; known stages: %s", name, strings.Join(KnownStages, ", "))
	s.log.Error("unknown stage", "stage", name, "container", st.ID, "error", msg)
	if *strict || s.cfg.Strict {
		fmt.Fprintf(env.Stderr, "%s: %s\n", Prog, msg)
		return ExitUsage, true
	}
	return ExitOK, true
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }

func stageCreateRuntime(ctx context.Context, s *settings, st *specs.State, rec *record) error {
	if oci.DrainDisabled(st.Annotations) {
		rec.action = "skipped: opted out by annotation " + oci.AnnotationDrain
		return nil
	}
	if st.Pid <= 0 {
		return fmt.Errorf("container %s: the OCI state has no pid (status %q), so its network namespace cannot be pinned; is the hook installed at createRuntime?", st.ID, st.Status)
	}
	source := "/proc/" + strconv.Itoa(st.Pid) + "/ns/net"
	id, err := netns.IDOf(source)
	if err != nil {
		return fmt.Errorf("container %s: %w", st.ID, err)
	}
	rec.set(&rec.netns, id.String())
	if _, err := netns.CheckTarget(id); err != nil {
		// The container shares the host's (or the runtime's) namespace:
		// nothing of its own to drain later.
		rec.action = "skipped: " + err.Error()
		return nil
	}
	unlock, err := s.store.Lock(st.ID, true)
	if err != nil {
		return err
	}
	defer unlock()
	m := pin.Meta{ID: st.ID, PID: st.Pid, Bundle: st.Bundle, RuntimeState: oci.RuntimeStateDir(os.Getppid(), st.ID)}
	p, err := s.store.Pin(source, m)
	var other *pin.ErrOtherNetns
	if errors.As(err, &other) {
		// A leftover of an earlier container with this id whose poststop
		// never ran: empty it and make room.
		rec.warn("replaced a leftover pin of %s", other.Existing.NS)
		if _, derr := drainAndRelease(ctx, s, other.Existing, rec); derr != nil {
			rec.warn("leftover pin: %v", derr)
		}
		p, err = s.store.Pin(source, m)
	}
	if p != nil {
		rec.set(&rec.pin, p.Path)
	}
	if err != nil {
		if p != nil && p.Mounted {
			rec.warn("%v", err) // pinned; only the metadata is missing
			rec.action = "pinned"
			return nil
		}
		return err
	}
	rec.action = "pinned"
	return nil
}

func stagePoststop(ctx context.Context, s *settings, st *specs.State, rec *record) error {
	if err := pin.ValidID(st.ID); err != nil {
		return err
	}
	unlock, err := s.store.Lock(st.ID, true)
	if err != nil {
		return err
	}
	defer unlock()

	p, perr := s.store.Get(st.ID)
	if perr != nil && !errors.Is(perr, pin.ErrNoPin) {
		rec.warn("%v", perr)
	}
	if p != nil {
		rec.set(&rec.pin, p.Path)
	}
	optedOut := oci.DrainDisabled(st.Annotations)
	var cfg *oci.Config
	var cfgErr error
	if !optedOut {
		// Runtimes copy the annotations into the state, but not all of
		// them: config.json has the last word.
		if cfg, cfgErr = oci.ReadConfig(st.Bundle); cfgErr == nil {
			optedOut = oci.DrainDisabled(cfg.Annotations)
		}
	}
	if optedOut {
		rec.action = "skipped: opted out by annotation " + oci.AnnotationDrain
		if p != nil {
			if _, err := s.store.Release(st.ID); err != nil {
				return err
			}
			rec.action += "; pin released"
		}
		return nil
	}
	if p != nil && p.Mounted {
		_, err := drainAndRelease(ctx, s, p, rec)
		return err
	}
	if p != nil {
		rec.warn("pin %s is no longer a network namespace mount (unmounted by someone else?); removed it", p.Path)
		if _, err := s.store.Release(st.ID); err != nil {
			rec.warn("%v", err)
		}
		rec.set(&rec.pin, "")
	}

	// No pin: the namespace may still be reachable through a mount the
	// engine keeps (CNI, docker), named in config.json.
	if cfgErr != nil {
		return fmt.Errorf("container %s: no pin at %s and %w", st.ID, s.store.Path(st.ID), cfgErr)
	}
	if cfg == nil || !cfg.HasNetns {
		rec.action = "nothing to drain: the container has no network namespace of its own"
		return nil
	}
	path := cfg.NetnsPath
	switch {
	case path == "":
		rec.action = "nothing to drain"
		rec.warn("no pin for container %s at %s and config.json names no namespace path: was the createRuntime hook installed?", st.ID, s.store.Path(st.ID))
		return nil
	case oci.IsProcPath(path):
		rec.action = "nothing to drain"
		rec.warn("config.json names the namespace by process (%s), which is stale after the container stopped; not trusted", path)
		return nil
	case !netns.IsNsfs(path):
		rec.action = "nothing to drain"
		rec.warn("config.json namespace path %s is not a network namespace mount (already released)", path)
		return nil
	}
	ns, err := netns.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	_, err = drainChecked(ctx, s, ns, rec)
	return err
}

// drainAndRelease drains the namespace pinned by p when that is safe, then
// releases the pin (also when the drain was skipped or failed: a pin must
// not outlive its container).
func drainAndRelease(ctx context.Context, s *settings, p *pin.Pin, rec *record) (drained bool, err error) {
	ns, err := netns.Open(p.Path)
	if err == nil {
		drained, err = drainChecked(ctx, s, ns, rec)
		ns.Close()
	}
	released, rerr := s.store.Release(p.ID)
	if rerr != nil {
		return drained, errors.Join(err, rerr)
	}
	if released {
		rec.action += "; pin released"
	}
	return drained, err
}

// drainChecked drains ns unless it is the host's or our own namespace or a
// live process still runs in it.
func drainChecked(ctx context.Context, s *settings, ns *netns.NS, rec *record) (drained bool, err error) {
	rec.set(&rec.netns, ns.ID.String())
	warning, err := netns.CheckTarget(ns.ID)
	if err != nil {
		rec.action = "refused"
		return false, fmt.Errorf("refusing to drain %s: %w", ns.Path, err)
	}
	if warning != "" {
		rec.warn("%s", warning)
	}
	procs, unreadable, err := netns.Procs(ns.ID)
	if err != nil {
		return false, err
	}
	rec.unreadable = unreadable
	if len(procs) > 0 {
		rec.procs = procs
		rec.action = fmt.Sprintf("skipped: %d live processes still in the namespace (shared with another container)", len(procs))
		return false, nil
	}
	opts := s.cfg.DrainOptions(0)
	if caps, err := reap.ProbeCached(s.cfg.StateDir); err == nil {
		opts.Caps = caps
	} else {
		rec.warn("kernel probe: %v", err)
	}
	// Keep a slice of the budget for releasing the pin and logging.
	dl, _ := ctx.Deadline()
	left := time.Until(dl)
	opts.Timeout = left - min(left/5, 200*time.Millisecond)
	if opts.Timeout <= 0 {
		rec.action = "not drained"
		return false, fmt.Errorf("budget used up before the drain of %s could start", ns.ID)
	}
	report, err := reap.Drain(ctx, ns, opts)
	rec.report = report
	rec.action = "drained"
	if err != nil {
		return true, fmt.Errorf("drain %s: %w", ns.Path, err)
	}
	return true, nil
}
