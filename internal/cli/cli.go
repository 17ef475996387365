// Package cli implements the sockreap-hook command line: the OCI hook
// stages and the operator commands. Each command lives in its own file and
// registers itself; hook/main.go only calls Main.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/sockreap/sockreap/internal/steptime"
)

// Env is what a command may touch of the outside world.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand of sockreap-hook.
type Command struct {
	Name    string
	Aliases []string
	Summary string // one line for the command list
	Usage   string // synopsis after the program name, e.g. "drain (--netns PATH | --pid PID)"
	Hidden  bool   // not listed (OCI stages are listed separately)
	Stage   bool   // an OCI hook stage
	// Run runs the command; its error decides the exit code (ExitCode)
	// and Main prints it.
	Run func(env *Env, args []string) error
}

var commands = map[string]*Command{}

// Register adds a command; it panics on a duplicate name.
func Register(c *Command) {
	for _, n := range append([]string{c.Name}, c.Aliases...) {
		if _, dup := commands[n]; dup {
			panic("cli: duplicate command " + n)
		}
		commands[n] = c
	}
}

// Prog is the program name used in messages.
const Prog = "sockreap-hook"

// Main runs the command named by args[0], prints its error (one line
// naming the command) and returns its exit code (see ExitCode).
func Main(args []string, env *Env) int {
	steptime.Mark("init")
	// GOMAXPROCS stays as the runtime set it: raising it for the
	// drain's destroyers costs every hook process threads and context
	// switches (about half its CPU time), so the drainer raises it when
	// there are sockets to destroy (lifecycle.Reaper) and drain does.
	err := run(args, env)
	if err != nil && !errors.Is(err, ErrRemaining) && !errors.As(err, new(reported)) {
		fmt.Fprintf(env.Stderr, "%s%s\n", Prog, prefixed(err))
	}
	return ExitCode(err)
}

func run(args []string, env *Env) error {
	if len(args) == 0 {
		usage(env.Stderr)
		return reported{&UsageError{Err: errors.New("no command")}}
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help", "-help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.Run(env, []string{"--help"})
			}
		}
		usage(env.Stdout)
		return nil
	case "--version", "-version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		if handled, err := RunUnknownStage(env, name, args[1:]); handled {
			return err
		}
		return Usagef("", "unknown command or stage %q; run '%s --help' for the list", name, Prog)
	}
	return c.Run(env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "%s: force-close the sockets of a dying container's network namespace\n\n", Prog)
	fmt.Fprintf(w, "Usage:\n  %s COMMAND [flags]\n  %s STAGE [flags] < state.json   (as an OCI hook)\n\nCommands:\n", Prog, Prog)
	var cmds, stages []*Command
	seen := map[*Command]bool{}
	for _, c := range commands {
		if seen[c] || c.Hidden {
			continue
		}
		seen[c] = true
		if c.Stage {
			stages = append(stages, c)
		} else {
			cmds = append(cmds, c)
		}
	}
	for _, list := range [][]*Command{cmds, stages} {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-16s %s\n", c.Name, c.Summary)
	}
	if len(stages) > 0 {
		fmt.Fprintf(w, "\nOCI hook stages:\n")
		for _, c := range stages {
			fmt.Fprintf(w, "  %-16s %s\n", c.Name, c.Summary)
		}
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", Prog)
	fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
}

// NewFlags returns a flag set for command c that prints c's usage on
// --help and reports errors on env.Stderr.
func NewFlags(env *Env, c *Command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", Prog, c.Usage, c.Summary)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.VisitAll(func(f *flag.Flag) {
				name, u := flag.UnquoteUsage(f)
				fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, name, strings.ReplaceAll(u, "\n", "\n    \t"))
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
					fmt.Fprintf(w, " (default %s)", f.DefValue)
				}
				fmt.Fprintln(w)
			})
		}
		fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
	}
	return fs
}

// Parse parses args with fs. done is true when the command must stop:
// after --help (err nil) or on a usage error (a *UsageError).
func Parse(env *Env, fs *flag.FlagSet, args []string) (done bool, err error) {
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	fs.SetOutput(env.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(env.Stdout)
		fs.Usage()
		return true, nil
	}
	if err != nil {
		return true, Usagef(fs.Name(), "%v; run '%s %s --help'", err, Prog, fs.Name())
	}
	return false, nil
}

// StdEnv is the process's own stdio.
func StdEnv() *Env { return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr} }
