package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/dyingns"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/reap"
)

func init() {
	c := &Command{
		Name:    "doctor",
		Summary: "show what this kernel lets sockreap do (probes in a scratch namespace)",
		Usage:   "doctor [--json] [--exact] [--config FILE] [--metrics-dir DIR]",
	}
	c.Run = func(env *Env, args []string) error { return runDoctor(env, c, args) }
	Register(c)
}

type doctorReport struct {
	*reap.Capabilities
	Root         bool   `json:"root"`
	HostNetns    string `json:"host_netns"`
	HostVerified bool   `json:"host_netns_verified"`
	SelfNetns    string `json:"self_netns"`
	// DyingNetns counts namespaces no process or mount holds.
	DyingNetns *dyingns.Census `json:"dying_netns,omitempty"`
	DyingError string          `json:"dying_netns_error,omitempty"`
}

func runDoctor(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	asJSON := fs.Bool("json", false, "print one JSON object")
	exact := fs.Bool("exact", false, "count dying namespaces exactly: flush the net_namespace slab's per-CPU caches first (writes /sys/kernel/slab/net_namespace/shrink)")
	var cf commonFlags
	fs.StringVar(&cf.configPath, "config", "", "configuration file (default "+config.DefaultPath+", or $"+config.EnvConfig+")")
	cf.addMetrics(fs)
	if done, err := Parse(env, fs, args); done {
		return err
	}
	o := cf.overrides()
	o.LogFile = os.DevNull
	s := resolve(env, o)
	caps, err := reap.Probe()
	if err != nil {
		return Failf(c.Name, "%v (run as root: the probe creates a scratch network namespace)", err)
	}
	r := doctorReport{Capabilities: caps, Root: os.Geteuid() == 0}
	if self, err := netns.Self(); err == nil {
		r.SelfNetns = self.String()
		host, verified := netns.IsHost(self)
		r.HostVerified = verified
		if host {
			r.HostNetns = self.String()
		} else if h, known, _ := netns.Host(); known {
			r.HostNetns = h.String()
		}
	}
	g, census, derr := nodeGauges(s.cfg.StateDir, *exact)
	g.Kernel = caps
	r.DyingNetns = census
	if derr != nil {
		r.DyingError = derr.Error()
	}
	mt, err := openMetrics(s.cfg)
	warnMetrics(env, c.Name, err)
	if mt != nil {
		warnMetrics(env, c.Name, mt.SetGauges(g))
	}
	if *asJSON {
		_ = json.NewEncoder(env.Stdout).Encode(r)
		return nil
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(w, "kernel\t%s\n", caps.Kernel)
	fmt.Fprintf(w, "SOCK_DESTROY\t%s\n", yes(caps.Destroy))
	fmt.Fprintf(w, "  TCP established\t%s\n", yes(caps.TCP))
	fmt.Fprintf(w, "  TCP listen\t%s\n", yes(caps.Listen))
	fmt.Fprintf(w, "  TCP TIME_WAIT\t%s\n", yes(caps.TimeWait))
	fmt.Fprintf(w, "  UDP\t%s\n", yes(caps.UDP))
	fmt.Fprintf(w, "  orphans freed (safe)\t%s\n", yes(caps.OrphanSafe))
	host := r.HostNetns
	if !r.HostVerified {
		host = "unverified (/proc/1/ns/net unreadable)"
	}
	fmt.Fprintf(w, "host netns\t%s\n", host)
	fmt.Fprintf(w, "own netns\t%s\n", r.SelfNetns)
	switch c := census; {
	case c == nil:
		fmt.Fprintf(w, "dying netns\tunknown: %s\n", r.DyingError)
	case c.Exact:
		fmt.Fprintf(w, "dying netns\t%d (no process, file or mount holds them; exact)\n", c.Lower)
	default:
		fmt.Fprintf(w, "dying netns\t%d to %d (no process, file or mount holds them; --exact to count precisely)\n", c.Lower, c.Upper)
	}
	w.Flush()
	for _, n := range caps.Notes {
		fmt.Fprintf(env.Stdout, "note: %s\n", n)
	}
	return nil
}
