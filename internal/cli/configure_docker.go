package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "docker",
		Summary: "register sockreap-shim as a Docker runtime in daemon.json",
		Usage:   "docker [--config FILE] [--shim PATH] [--set-default] [--dry-run] [--reload [--pidfile FILE]] [--remove]",
		Run:     runConfigureDocker,
	})
}

func runConfigureDocker(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var f engineFlags
	t := engine.DockerTarget{}
	fs.StringVar(&t.Config, "config", "/etc/docker/daemon.json", "Docker daemon configuration `file`")
	fs.StringVar(&t.ShimPath, "shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	fs.BoolVar(&t.SetDefault, "set-default", false, "also make sockreap the default-runtime (every container gets the hooks)")
	fs.StringVar(&t.Pidfile, "pidfile", "/var/run/docker.pid", "dockerd's pid `file` (its --pidfile) for --reload")
	f.add(fs, "daemon.json")
	if done, err := parseEngine(env, c, fs, args, &f, &t.ShimPath, "--shim", nil); done {
		return err
	}
	return runEngine(env, c, f, t, func(bool) {
		fmt.Fprintf(env.Stdout, "dockerd picks this up on SIGHUP (run again with --reload, or: kill -HUP $(cat %s)); no restart needed\n", t.Pidfile)
	})
}
