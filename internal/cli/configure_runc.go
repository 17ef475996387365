package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sockreap/sockreap/internal/oci"
)

func init() {
	RegisterConfigureTarget(&ConfigureTarget{
		Name:    "runc",
		Summary: "add the createRuntime and poststop hooks to an OCI bundle's config.json (runc, crun)",
		Usage:   "runc --bundle DIR [--hook PATH] [--timeout SECONDS] [--state-dir DIR] [--log FILE] [--config FILE] [--strict] [--remove]",
		Run:     runConfigureRunc,
	})
}

func runConfigureRunc(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	bundle := fs.String("bundle", "", "the bundle `directory` holding config.json (required)")
	hook := fs.String("hook", hookSelfPath(), "absolute `path` of sockreap-hook the runtime runs")
	timeout := fs.Int("timeout", oci.DefaultHookTimeout, "OCI hook timeout in `seconds` (0: none); the hook keeps its budget inside it")
	stateDir := fs.String("state-dir", "", "state directory the hooks use (default: theirs, /run/sockreap)")
	logFile := fs.String("log", "", "log file the hooks write (default: theirs, /var/log/sockreap/hook.log)")
	configFile := fs.String("config", "", "configuration file the hooks read")
	strict := fs.Bool("strict", false, "make failing hooks fail the container's start or delete")
	remove := fs.Bool("remove", false, "remove the sockreap hooks instead")
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	if *bundle == "" {
		return Usagef(c.Name, "--bundle DIR is required (the directory holding config.json)")
	}
	dir, err := filepath.Abs(*bundle)
	if err != nil {
		return Usagef(c.Name, "bundle %s: %v", *bundle, err)
	}
	if _, err := os.Stat(oci.ConfigPath(dir)); err != nil {
		return Usagef(c.Name, "bundle %s has no readable config.json (%v); create one with 'runc spec' first", dir, err)
	}
	if *remove {
		changed, err := oci.RemoveHooks(dir, *hook)
		if err != nil {
			return Usagef(c.Name, "%v", err)
		}
		reportConfigured(env, changed, oci.ConfigPath(dir), "removed the sockreap hooks", "no sockreap hooks to remove")
		return nil
	}
	if !filepath.IsAbs(*hook) {
		return Usagef(c.Name, "--hook must be an absolute path, got %q", *hook)
	}
	if fi, err := os.Stat(*hook); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return Usagef(c.Name, "--hook %s is not an executable file; install sockreap-hook (make install) or pass --hook PATH", *hook)
	}
	if *timeout < 0 {
		return Usagef(c.Name, "--timeout must be 0 or more seconds, got %d", *timeout)
	}
	opts := oci.HookOptions{Path: *hook, Timeout: *timeout}
	for _, f := range []struct{ name, val string }{{"--config", *configFile}, {"--state-dir", *stateDir}, {"--log", *logFile}} {
		if f.val == "" {
			continue
		}
		v, err := filepath.Abs(f.val)
		if err != nil {
			return Usagef(c.Name, "%s %s: %v", f.name, f.val, err)
		}
		opts.Args = append(opts.Args, f.name+"="+v)
	}
	if *strict {
		opts.Args = append(opts.Args, "--strict")
	}
	changed, err := oci.AddHooks(dir, opts)
	if err != nil {
		return Usagef(c.Name, "%v", err)
	}
	reportConfigured(env, changed, oci.ConfigPath(dir), "added the sockreap createRuntime and poststop hooks (timeout "+strconv.Itoa(*timeout)+"s)", "the sockreap hooks are already there")
	return nil
}

func reportConfigured(env *Env, changed bool, path, did, already string) {
	if changed {
		fmt.Fprintf(env.Stdout, "%s: %s\n", path, did)
	} else {
		fmt.Fprintf(env.Stdout, "%s: %s; nothing changed\n", path, already)
	}
}

// hookSelfPath is the absolute path of the running sockreap-hook.
func hookSelfPath() string {
	self, err := os.Executable()
	if err != nil {
		return "/usr/local/bin/" + oci.HookName
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	return self
}
