package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "containerd",
		Summary: "add a sockreap runtime handler (runc.v2 running sockreap-shim) to containerd's config.toml",
		Usage:   "containerd [--config FILE] [--shim PATH] [--set-default] [--config-version 2|3] [--dry-run] [--reload]",
		Run:     runConfigureContainerd,
	})
}

func runConfigureContainerd(env *Env, c *Command, args []string) int {
	fs := NewFlags(env, c)
	config := fs.String("config", "/etc/containerd/config.toml", "containerd configuration `file`")
	shim := fs.String("shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	setDefault := fs.Bool("set-default", false, "also make sockreap the CRI default runtime (Kubernetes pods without a RuntimeClass get it)")
	version := fs.Int("config-version", 0, "schema for a new file: 2 (containerd 1.x) or 3 (2.x); default: ask the installed containerd")
	dryRun := fs.Bool("dry-run", false, "print the new config.toml, write nothing")
	reload := fs.Bool("reload", false, "containerd cannot reload its config: prints the restart command")
	old, exists, code, done := parseEngineFile(env, c, fs, args, config, shim, dryRun, func() error {
		if *version != 0 && *version != 2 && *version != 3 {
			return fmt.Errorf("--config-version must be 2 or 3, got %d", *version)
		}
		return nil
	})
	if done {
		return code
	}
	e, err := engine.Containerd(*config, old, exists, engine.ContainerdOptions{ShimPath: *shim, SetDefault: *setDefault, Version: *version})
	if err != nil {
		return Usagef(env, c.Name, "%v", err)
	}
	changed, err := engine.Commit(env.Stdout, []*engine.Edit{e}, *dryRun)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", Prog, c.Name, err)
		return 1
	}
	if *dryRun {
		return ExitOK
	}
	if changed || *reload {
		fmt.Fprintln(env.Stdout, "containerd reads its config only at start: restart it (systemctl restart containerd); running containers keep running")
	}
	fmt.Fprintf(env.Stdout, "use it: Kubernetes RuntimeClass handler %q; ctr run --runtime io.containerd.runc.v2 --runc-binary %s ...\n", engine.RuntimeName, *shim)
	return ExitOK
}
