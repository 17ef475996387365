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
		Usage:   "hooksd [--dir DIR] [--hook PATH] [--hook-arg FLAG]... [--dry-run] [--remove]",
		Run:     runConfigureHooksD,
	})
}

func runConfigureHooksD(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var f engineFlags
	t := engine.HooksDTarget{}
	fs.StringVar(&t.Dir, "dir", "/etc/containers/oci/hooks.d", "hooks.d `directory`")
	fs.StringVar(&t.Hook, "hook", engine.Sibling("sockreap-hook"), "absolute `path` of sockreap-hook")
	var extra stringList
	fs.Var(&extra, "hook-arg", "extra `flag` for the hook after the stage, repeatable (e.g. --hook-arg=--state-dir=/run/sockreap)")
	f.add(fs, "files")
	if done, err := parseEngine(env, c, fs, args, &f, &t.Hook, "--hook", nil); done {
		return err
	}
	t.Extra = extra
	return runEngine(env, c, f, t, func(changed bool) {
		if changed {
			fmt.Fprintln(env.Stdout, "no restart needed: CRI-O watches hooks.d, podman reads it for each container (podman --hooks-dir DIR for another directory)")
		}
	})
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
