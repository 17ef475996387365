package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "containerd",
		Summary: "add a sockreap runtime handler (runc.v2 running sockreap-shim) to containerd's config.toml",
		Usage:   "containerd [--config FILE] [--shim PATH] [--set-default] [--config-version 2|3] [--dry-run] [--reload] [--remove]",
		Run:     runConfigureContainerd,
	})
}

func runConfigureContainerd(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var f engineFlags
	t := engine.ContainerdTarget{}
	fs.StringVar(&t.Config, "config", "/etc/containerd/config.toml", "containerd configuration `file`")
	fs.StringVar(&t.ShimPath, "shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	fs.BoolVar(&t.SetDefault, "set-default", false, "also make sockreap the CRI default runtime (Kubernetes pods without a RuntimeClass get it)")
	fs.IntVar(&t.Version, "config-version", 0, "schema for a new file: 2 (containerd 1.x) or 3 (2.x); default: ask the installed containerd")
	f.add(fs, "config.toml")
	if done, err := parseEngine(env, c, fs, args, &f, &t.ShimPath, "--shim", func() error {
		if t.Version != 0 && t.Version != 2 && t.Version != 3 {
			return fmt.Errorf("--config-version must be 2 or 3, got %d", t.Version)
		}
		return nil
	}); done {
		return err
	}
	return runEngine(env, c, f, t, func(changed bool) {
		if changed {
			fmt.Fprintln(env.Stdout, "containerd reads its config only at start: restart it (systemctl restart containerd); running containers keep running")
		}
		if !f.remove {
			fmt.Fprintf(env.Stdout, "use it: Kubernetes RuntimeClass handler %q; ctr run --runtime io.containerd.runc.v2 --runc-binary %s ...\n", engine.RuntimeName, t.ShimPath)
		}
	})
}
