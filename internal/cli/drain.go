package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/lifecycle"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/reap"
)

func init() {
	c := &Command{
		Name:    "drain",
		Summary: "force-close every TCP and UDP socket in a network namespace",
		Usage:   "drain (--netns PATH | --pid PID) [--dry-run] [--timeout D] [--json] [--force] [--orphans P] [--protocols L] [--workers N]",
	}
	c.Run = func(env *Env, args []string) error { return runDrain(env, c, args) }
	Register(c)
}

func runDrain(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var (
		t         targetFlags
		cf        commonFlags
		dryRun    = fs.Bool("dry-run", false, "report what would be destroyed; destroy nothing")
		timeout   = fs.Duration("timeout", reap.DefaultTimeout, "give up after `D` (e.g. 500ms, 2s)")
		asJSON    = fs.Bool("json", false, "print the report as one JSON object")
		force     = fs.Bool("force", false, "drain even though live processes run in the namespace")
		orphans   = fs.String("orphans", "", "orphan policy: auto (destroy only where the kernel frees them), destroy, spare (default: orphans in the config file, auto)")
		protocols = fs.String("protocols", "", "protocols to drain: tcp, udp or tcp,udp (default: protocols in the config file, tcp,udp)")
		workers   = fs.Int("workers", 0, "parallel destroyers (0: one per CPU)")
	)
	t.register(fs)
	cf.addConfig(fs)
	cf.addMetrics(fs)
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return Usagef(c.Name, "--timeout must be positive, got %s", *timeout)
	}
	o := cf.overrides()
	o.LogFile = os.DevNull // the report goes to stdout
	o.Orphans = *orphans
	if err := config.CheckDrain(nil, *orphans); err != nil {
		return Usagef(c.Name, "--orphans must be auto, destroy or spare, got %q", *orphans)
	}
	if *protocols != "" {
		tcp, udp, err := parseProtocols(*protocols)
		if err != nil {
			return Usagef(c.Name, "--protocols: %v", err)
		}
		o.Protocols = []string{}
		if tcp {
			o.Protocols = append(o.Protocols, "tcp")
		}
		if udp {
			o.Protocols = append(o.Protocols, "udp")
		}
	}
	s := resolveWarn(env, o, "drain")

	ns, err := t.open(env, c.Name)
	if err != nil {
		return err
	}
	defer ns.Close()
	core := s.core()
	core.Options.Timeout = *timeout
	core.Options.DryRun = *dryRun
	core.Options.Workers = *workers
	reap.RaiseGOMAXPROCS(reap.GOMAXPROCS(*workers))
	// A dry run destroys nothing, so live processes may watch it.
	core.Force = *force || *dryRun
	hint := lifecycle.Hint{Everyone: true}
	if t.pid > 0 {
		hint.PIDs = []int{t.pid}
	}
	out := core.DrainNamespace(context.Background(), ns, hint)
	if !*dryRun {
		mt, err := openMetrics(s.cfg)
		warnMetrics(env, c.Name, err)
		if mt != nil {
			ev := metrics.DrainEvent{Frontend: metrics.FrontendCLI, Outcome: outcomeName(out), Report: out.Report, Failed: out.Err != nil}
			warnMetrics(env, c.Name, mt.Record(ev))
		}
	}
	switch out.Action {
	case lifecycle.SkippedShared:
		return Usagef(c.Name, "refusing %s: a live process still runs in network namespace %s (%s); stop it first or pass --force",
			ns.Path, ns.ID, inuse.DescribeUsers(out.Processes))
	case lifecycle.Refused:
		return &UsageError{Cmd: c.Name, Err: out.Err}
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(env.Stderr, "%s drain: warning: %s\n", Prog, w)
	}
	if out.Err != nil {
		return Failf(c.Name, "%s: %v", ns.Path, out.Err)
	}
	rep := out.Report
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(env.Stdout, rep.String())
	}
	if rep.Remaining > 0 {
		return ErrRemaining
	}
	return nil
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
