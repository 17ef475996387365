package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "crio",
		Summary: "add a sockreap runtime handler to CRI-O with a drop-in in /etc/crio/crio.conf.d",
		Usage:   "crio [--file FILE] [--shim PATH] [--set-default] [--dry-run] [--reload]",
		Run:     runConfigureCRIO,
	})
}

func runConfigureCRIO(env *Env, c *Command, args []string) int {
	fs := NewFlags(env, c)
	file := fs.String("file", engine.CRIODropIn, "drop-in `file` to write (sockreap's own; replaced whole)")
	shim := fs.String("shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	setDefault := fs.Bool("set-default", false, "also make sockreap CRI-O's default_runtime")
	dryRun := fs.Bool("dry-run", false, "print the drop-in, write nothing")
	reload := fs.Bool("reload", false, "prints how to make CRI-O pick the drop-in up")
	old, exists, code, done := parseEngineFile(env, c, fs, args, file, shim, dryRun, nil)
	if done {
		return code
	}
	e := engine.CRIO(*file, old, exists, engine.CRIOOptions{ShimPath: *shim, SetDefault: *setDefault})
	changed, err := engine.Commit(env.Stdout, []*engine.Edit{e}, *dryRun)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", Prog, c.Name, err)
		return 1
	}
	if !*dryRun && (changed || *reload) {
		fmt.Fprintln(env.Stdout, "CRI-O reads runtime handlers at start: restart it (systemctl restart crio)")
		fmt.Fprintf(env.Stdout, "alternative without a restart: %s configure hooksd (CRI-O watches hooks.d)\n", Prog)
	}
	return ExitOK
}
