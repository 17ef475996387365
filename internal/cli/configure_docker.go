package cli

import (
	"fmt"

	"github.com/sockreap/sockreap/internal/engine"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "docker",
		Summary: "register sockreap-shim as a Docker runtime in daemon.json",
		Usage:   "docker [--config FILE] [--shim PATH] [--set-default] [--dry-run] [--reload [--pidfile FILE]]",
		Run:     runConfigureDocker,
	})
}

func runConfigureDocker(env *Env, c *Command, args []string) int {
	fs := NewFlags(env, c)
	config := fs.String("config", "/etc/docker/daemon.json", "Docker daemon configuration `file`")
	shim := fs.String("shim", engine.Sibling("sockreap-shim"), "absolute `path` of sockreap-shim")
	setDefault := fs.Bool("set-default", false, "also make sockreap the default-runtime (every container gets the hooks)")
	dryRun := fs.Bool("dry-run", false, "print the new daemon.json, write nothing")
	reload := fs.Bool("reload", false, "send SIGHUP to dockerd so it reloads its runtimes")
	pidfile := fs.String("pidfile", "/var/run/docker.pid", "dockerd's pid `file` (its --pidfile) for --reload")
	old, exists, code, done := parseEngineFile(env, c, fs, args, config, shim, dryRun, nil)
	if done {
		return code
	}
	e, err := engine.Docker(*config, old, exists, engine.DockerOptions{ShimPath: *shim, SetDefault: *setDefault})
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
	if *reload && !changed {
		fmt.Fprintf(env.Stdout, "daemon.json unchanged: dockerd not signalled (if it has not loaded this file yet: kill -HUP $(cat %s))\n", *pidfile)
		return ExitOK
	}
	if !*reload {
		fmt.Fprintf(env.Stdout, "dockerd picks this up on SIGHUP (run again with --reload, or: kill -HUP $(cat %s)); no restart needed\n", *pidfile)
		return ExitOK
	}
	pid, err := engine.SignalDockerd(*pidfile)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: reload: %v; start dockerd or pass --pidfile\n", Prog, c.Name, err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "sent SIGHUP to dockerd (pid %d); check: docker info --format '{{json .Runtimes}}'\n", pid)
	return ExitOK
}
