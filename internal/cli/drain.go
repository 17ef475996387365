package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/reap"
)

func init() {
	c := &Command{
		Name:    "drain",
		Summary: "force-close every TCP and UDP socket in a network namespace",
		Usage:   "drain (--netns PATH | --pid PID) [--dry-run] [--timeout D] [--json] [--force] [--orphans P] [--protocols L] [--workers N]",
	}
	c.Run = func(env *Env, args []string) int { return runDrain(env, c, args) }
	Register(c)
}

func runDrain(env *Env, c *Command, args []string) int {
	fs := NewFlags(env, c)
	var (
		t         targetFlags
		dryRun    = fs.Bool("dry-run", false, "report what would be destroyed; destroy nothing")
		timeout   = fs.Duration("timeout", reap.DefaultTimeout, "give up after `D` (e.g. 500ms, 2s)")
		asJSON    = fs.Bool("json", false, "print the report as one JSON object")
		force     = fs.Bool("force", false, "drain even though live processes run in the namespace")
		orphans   = fs.String("orphans", string(reap.OrphansAuto), "orphan policy: auto (destroy only where the kernel frees them), destroy, spare")
		protocols = fs.String("protocols", "tcp,udp", "protocols to drain: tcp, udp or tcp,udp")
		stateDir  = fs.String("state-dir", defaultStateDir(), "where the kernel probe result is cached")
		workers   = fs.Int("workers", 0, "parallel destroyers (0: one per CPU)")
	)
	t.register(fs)
	if code, done := Parse(env, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return Usagef(env, c.Name, "unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return Usagef(env, c.Name, "--timeout must be positive, got %s", *timeout)
	}
	opts := reap.Options{Timeout: *timeout, DryRun: *dryRun, Orphans: reap.OrphanPolicy(*orphans), Workers: *workers}
	switch opts.Orphans {
	case reap.OrphansAuto, reap.OrphansDestroy, reap.OrphansSpare:
	default:
		return Usagef(env, c.Name, "--orphans must be auto, destroy or spare, got %q", *orphans)
	}
	tcp, udp, err := parseProtocols(*protocols)
	if err != nil {
		return Usagef(env, c.Name, "--protocols: %v", err)
	}
	opts.TCP, opts.UDP = &tcp, &udp

	ns, code := t.open(env, c.Name)
	if ns == nil {
		return code
	}
	defer ns.Close()
	procs, _, err := netns.Procs(ns.ID)
	if err != nil {
		return Usagef(env, c.Name, "list processes in %s: %v", ns.ID, err)
	}
	if len(procs) > 0 && !*force && !*dryRun {
		return Usagef(env, c.Name, "refusing %s: %d live process(es) still run in network namespace %s (%s); stop them first or pass --force",
			ns.Path, len(procs), ns.ID, describeProcs(procs))
	}
	if caps, err := reap.ProbeCached(*stateDir); err == nil {
		opts.Caps = caps
	}
	rep, err := reap.Drain(context.Background(), ns, opts)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s drain: %s: %v\n", Prog, ns.Path, err)
		return ExitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(env.Stdout, rep.String())
	}
	if rep.Remaining > 0 {
		return ExitRemaining
	}
	return ExitOK
}

// defaultStateDir is the configured state directory: $SOCKREAP_STATE_DIR
// or the built-in default.
func defaultStateDir() string {
	c := config.Default()
	c.ApplyEnv(os.Getenv)
	return c.StateDir
}

func parseProtocols(s string) (tcp, udp bool, err error) {
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(p)) {
		case "tcp":
			tcp = true
		case "udp":
			udp = true
		case "":
		default:
			return false, false, fmt.Errorf("unknown protocol %q (tcp or udp)", p)
		}
	}
	if !tcp && !udp {
		return false, false, fmt.Errorf("no protocol in %q", s)
	}
	return tcp, udp, nil
}
