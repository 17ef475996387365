package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "crio",
		Summary: "add a sockreap runtime handler to CRI-O with a drop-in in /etc/crio/crio.conf.d",
		Usage:   "crio [--file FILE] [--shim PATH] [--set-default] [--dry-run] [--reload] [--remove]",
		Run:     runConfigureCRIO,
	})
}

func runConfigureCRIO(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var f engineFlags
	t := engine.CRIOTarget{}
	fs.StringVar(&t.File, "file", engine.CRIODropIn, "drop-in `file` to write (sockreap's own; replaced whole, removed by --remove)")
	fs.StringVar(&t.ShimPath, "shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	fs.BoolVar(&t.SetDefault, "set-default", false, "also make sockreap CRI-O's default_runtime")
	f.add(fs, "drop-in")
	if done, err := parseEngine(env, c, fs, args, &f, &t.ShimPath, "--shim", nil); done {
		return err
	}
	return runEngine(env, c, f, t, func(changed bool) {
		if changed {
			fmt.Fprintln(env.Stdout, "CRI-O reads runtime handlers at start: restart it (systemctl restart crio)")
			if !f.remove {
				fmt.Fprintf(env.Stdout, "alternative without a restart: %s configure hooksd (CRI-O watches hooks.d)\n", Prog)
			}
		}
	})
}
