package cli

import (
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
	Run     func(env *Env, c *Command, args []string) int
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

func runConfigure(env *Env, args []string) int {
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
			return ExitUsage
		}
		return ExitOK
	}
	t, ok := configureTargets[args[0]]
	if !ok {
		return Usagef(env, "configure", "unknown target %q; one of: %s", args[0], strings.Join(names, ", "))
	}
	c := &Command{Name: "configure " + t.Name, Summary: t.Summary, Usage: "configure " + t.Usage}
	return t.Run(env, c, args[1:])
}

// parseEngineFile parses an engine target's arguments and reads the file it
// edits: no stray argument, check (if any) passes, the shim is executable
// unless --dry-run, and the file reads. done is true, with the exit code,
// when the command must stop.
func parseEngineFile(env *Env, c *Command, fs *flag.FlagSet, args []string, file, shim *string, dryRun *bool, check func() error) (old []byte, exists bool, code int, done bool) {
	if code, done := Parse(env, fs, args); done {
		return nil, false, code, true
	}
	if fs.NArg() > 0 {
		return nil, false, Usagef(env, c.Name, "unexpected argument %q", fs.Arg(0)), true
	}
	if check != nil {
		if err := check(); err != nil {
			return nil, false, Usagef(env, c.Name, "%v", err), true
		}
	}
	if err := engine.Executable(*shim, "--shim"); err != nil && !*dryRun {
		return nil, false, Usagef(env, c.Name, "%v", err), true
	}
	old, exists, err := engine.ReadFile(*file)
	if err != nil {
		return nil, false, Usagef(env, c.Name, "%v", err), true
	}
	return old, exists, 0, false
}
