// Package shim is sockreap-shim: a drop-in runc-compatible runtime. For
// "create" and "run" it adds the sockreap OCI hooks to the bundle's
// config.json, then it execs the real runtime (runc by default) with the
// command line unchanged; every other command goes straight through. As
// the real runtime replaces the shim process, exit codes, stdio, signals
// and the process tree are the runtime's own.
package shim

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/oci"
)

// Name is the program name in messages.
const Name = "sockreap-shim"

// fallbackPath is searched when PATH is empty (containerd shims and
// engines sometimes run with a minimal environment).
const fallbackPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Main runs the shim with args (without the program name). It returns
// only on failure; on success the real runtime has replaced the process.
func Main(args []string, stderr io.Writer) int {
	inv := Parse(args)
	log, toFile, closeLog := newLogger(inv, stderr)
	fail := func(err error) int {
		// stderr for the caller, and the --log file, where dockerd and
		// containerd look for the runtime's error; runc's exit code.
		fmt.Fprintf(stderr, "%s: %v\n", Name, err)
		if toFile {
			log.Error(err.Error())
		}
		closeLog()
		return 1
	}

	cfg, err := LoadConfig(inv, os.Getenv)
	if err != nil {
		return fail(err)
	}
	runtime, err := ResolveRuntime(cfg.Runtime)
	if err != nil {
		return fail(err)
	}
	if inv.Command == "create" || inv.Command == "run" {
		// Fail open: a container without the hooks is better than no
		// container; the warning says why it has none.
		bundle, err := inv.BundleDir(DialectOf(runtime))
		switch {
		case errors.Is(err, ErrHelp):
		case err != nil:
			log.Warn("container started without sockreap hooks: its command line is not clear enough to tell which config.json to edit, so no file was touched; pass --bundle DIR before or after the container id", "error", err.Error(), "args", inv.Args)
		default:
			switch changed, err := inject(bundle, cfg); {
			case err != nil:
				log.Warn("container started without sockreap hooks", "bundle", bundle, "error", err.Error())
			case changed:
				log.Info("sockreap hooks added", "bundle", bundle)
			}
		}
	}
	argv := append([]string{filepath.Base(runtime)}, inv.Argv()...)
	// Go opens files close-on-exec: the runtime does not inherit our log.
	err = unix.Exec(runtime, argv, os.Environ())
	return fail(fmt.Errorf("exec %s: %w", runtime, err))
}

// inject adds the hooks to the bundle's config.json; changed is false
// when they were there already (a hooks.d file or a previous attempt).
func inject(bundle string, cfg *Config) (changed bool, err error) {
	if _, err := os.Stat(oci.ConfigPath(bundle)); errors.Is(err, fs.ErrNotExist) {
		return false, nil // the runtime itself reports the missing bundle
	}
	hook, err := ResolveHook(cfg.Hook)
	if err != nil {
		return false, err
	}
	return oci.AddHooks(bundle, oci.HookOptions{Path: hook, Args: cfg.HookArgs, Timeout: cfg.HookTimeout, Stages: hookStages(bundle)})
}

// hookStages are the stages the container needs: poststop alone where
// nothing need be pinned (oci.PinNeeded: the engine keeps a namespace
// mount named in config.json until the delete, or the container has no
// namespace of its own), which saves a process per container start; both
// otherwise, and when config.json cannot be read (the runtime reports a
// broken one).
func hookStages(bundle string) []oci.Stage {
	c, err := oci.ReadConfig(bundle)
	if err != nil {
		return nil
	}
	if needed, _ := oci.PinNeeded(c, oci.ClassifyNetnsPath(c.NetnsPath).Kind); needed {
		return nil
	}
	return []oci.Stage{oci.StagePoststop}
}

// ResolveRuntime finds the real runtime: an absolute path as given, or a
// name in PATH. It never picks the shim itself (installed under the
// runtime's name it would exec itself forever): a PATH search skips it.
func ResolveRuntime(name string) (string, error) {
	self, _ := os.Executable()
	path, err := lookPath(name, self)
	if err != nil {
		return "", fmt.Errorf("real runtime %q not found (%w); install runc, or name the runtime (crun, or an absolute path) with SOCKREAP_RUNTIME, --sockreap-runtime or \"runtime\" in %s", name, err, DefaultConfigPath)
	}
	if self != "" && sameFile(self, path) {
		return "", fmt.Errorf("real runtime %q is %s, which is sockreap-shim itself; name the real runtime's absolute path (SOCKREAP_RUNTIME or \"runtime\" in %s)", name, path, DefaultConfigPath)
	}
	return path, nil
}

// ResolveHook returns the absolute path of sockreap-hook: as configured,
// else next to the shim, else in PATH.
func ResolveHook(configured string) (string, error) {
	if configured != "" {
		if !filepath.IsAbs(configured) {
			return "", fmt.Errorf("hook path %q is not absolute", configured)
		}
		if _, err := os.Stat(configured); err != nil {
			return "", fmt.Errorf("hook %s: %w", configured, err)
		}
		return configured, nil
	}
	if self, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(self); err == nil {
			self = r
		}
		p := filepath.Join(filepath.Dir(self), oci.HookName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := lookPath(oci.HookName, "")
	if err != nil {
		return "", fmt.Errorf("%s not found next to %s nor in PATH; install it or set SOCKREAP_HOOK", oci.HookName, Name)
	}
	return p, nil
}

// lookPath finds an executable like exec.LookPath, skipping the file skip
// (the shim) in a PATH search.
func lookPath(name, skip string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("%q is a relative path", name)
		}
		st, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", errors.New("not an executable file")
		}
		return name, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = fallbackPath
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode().Perm()&0o111 != 0 {
			if skip != "" && sameFile(skip, p) {
				continue
			}
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
