package cli

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/sockreap/sockreap/internal/engine"
)

// ConfigureTarget is one target of "sockreap-hook configure": runc, docker,
// containerd, crio, hooksd. Each lives in its own file and registers itself
// with RegisterConfigureTarget.
type ConfigureTarget struct {
	Name    string
	Summary string
	Usage   string // after "configure", e.g. "docker [--config FILE] [--set-default]"
	Run     func(env *Env, c *Command, args []string) error
}

var configureTargets = map[string]*ConfigureTarget{}

// RegisterConfigureTarget adds a configure target.
func RegisterConfigureTarget(t *ConfigureTarget) {
	if _, dup := configureTargets[t.Name]; dup {
		panic("cli: duplicate configure target " + t.Name)
	}
	configureTargets[t.Name] = t
}

func init() {
	Register(&Command{
		Name:    "configure",
		Summary: "install the sockreap hooks into a runtime or engine configuration",
		Usage:   "configure TARGET [flags]",
		Run:     runConfigure,
	})
}

func runConfigure(env *Env, args []string) error {
	names := make([]string, 0, len(configureTargets))
	for n := range configureTargets {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		w := env.Stdout
		if len(args) == 0 {
			w = env.Stderr
		}
		fmt.Fprintf(w, "Usage: %s configure TARGET [flags]\n\nTargets:\n", Prog)
		for _, n := range names {
			fmt.Fprintf(w, "  %-11s %s\n", n, configureTargets[n].Summary)
		}
		fmt.Fprintf(w, "\nRun '%s configure TARGET --help' for a target's flags.\n", Prog)
		if len(args) == 0 {
			return reported{&UsageError{Cmd: "configure", Err: errors.New("no target")}}
		}
		return nil
	}
	t, ok := configureTargets[args[0]]
	if !ok {
		return Usagef("configure", "unknown target %q; one of: %s", args[0], strings.Join(names, ", "))
	}
	c := &Command{Name: "configure " + t.Name, Summary: t.Summary, Usage: "configure " + t.Usage}
	return t.Run(env, c, args[1:])
}

// engineFlags are the flags every engine target shares.
type engineFlags struct {
	dryRun, reload, remove bool
}

func (f *engineFlags) add(fs *flag.FlagSet, what string) {
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the new "+what+", write nothing")
	fs.BoolVar(&f.reload, "reload", false, "make the engine read the changed configuration, when it can (only when a file changed)")
	fs.BoolVar(&f.remove, "remove", false, "undo what configure added (a backup of each changed file is kept)")
}

// parseEngine parses an engine target's arguments: no stray argument,
// check (if any) passes, and the executable sockreap puts into the
// configuration exists unless --dry-run or --remove.
func parseEngine(env *Env, c *Command, fs *flag.FlagSet, args []string, f *engineFlags, exe *string, exeFlag string, check func() error) (done bool, err error) {
	if done, err := Parse(env, fs, args); done {
		return true, err
	}
	if fs.NArg() > 0 {
		return true, Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	if check != nil {
		if err := check(); err != nil {
			return true, Usagef(c.Name, "%v", err)
		}
	}
	if err := engine.Executable(*exe, exeFlag); err != nil && !f.dryRun && !f.remove {
		return true, Usagef(c.Name, "%v", err)
	}
	return false, nil
}

// runEngine plans the target's edits (or, with --remove, their undoing),
// commits them with backups and, with --reload, has the engine read them.
// hint says what the operator does next when --reload was not given.
func runEngine(env *Env, c *Command, f engineFlags, t engine.Target, hint func(changed bool)) error {
	plan := t.Plan
	if f.remove {
		plan = t.PlanRemove
	}
	edits, err := plan()
	if err != nil {
		return Usagef(c.Name, "%v", err)
	}
	changed, err := engine.Commit(env.Stdout, edits, f.dryRun)
	if err != nil {
		return &Failure{Cmd: c.Name, Err: err}
	}
	if f.dryRun {
		return nil
	}
	if !f.reload {
		if hint != nil {
			hint(changed)
		}
		return nil
	}
	msg, err := t.Reload(changed)
	if errors.Is(err, engine.ErrCannotReload) {
		fmt.Fprintln(env.Stdout, err)
		return nil
	}
	if err != nil {
		return Failf(c.Name, "reload: %v", err)
	}
	fmt.Fprintln(env.Stdout, msg)
	return nil
}
