package cli

import (
	"fmt"
	"strings"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "hooksd",
		Summary: "install the OCI hooks.d files (hooks.d 1.0.0) read by CRI-O and podman",
		Usage:   "hooksd [--dir DIR] [--hook PATH] [--hook-arg FLAG]... [--dry-run]",
		Run:     runConfigureHooksD,
	})
}

func runConfigureHooksD(env *Env, c *Command, args []string) int {
	fs := NewFlags(env, c)
	dir := fs.String("dir", "/etc/containers/oci/hooks.d", "hooks.d `directory`")
	hook := fs.String("hook", engine.Sibling("sockreap-hook"), "absolute `path` of sockreap-hook")
	dryRun := fs.Bool("dry-run", false, "print the files, write nothing")
	var extra stringList
	fs.Var(&extra, "hook-arg", "extra `flag` for the hook after the stage, repeatable (e.g. --hook-arg=--state-dir=/run/sockreap)")
	_ = fs.Bool("reload", false, "nothing to do: CRI-O watches hooks.d and podman reads it for each container")
	if code, done := Parse(env, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return Usagef(env, c.Name, "unexpected argument %q", fs.Arg(0))
	}
	if err := engine.Executable(*hook, "--hook"); err != nil && !*dryRun {
		return Usagef(env, c.Name, "%v", err)
	}
	edits, err := engine.HooksD(*dir, *hook, extra...)
	if err != nil {
		return Usagef(env, c.Name, "%v", err)
	}
	if _, err := engine.Commit(env.Stdout, edits, *dryRun); err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", Prog, c.Name, err)
		return 1
	}
	if !*dryRun {
		fmt.Fprintln(env.Stdout, "no restart needed: CRI-O watches hooks.d, podman reads it for each container (podman --hooks-dir DIR for another directory)")
	}
	return ExitOK
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
