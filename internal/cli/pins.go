package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sockreap/sockreap/internal/inuse"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/pin"
	"github.com/sockreap/sockreap/internal/textsafe"
)

func init() {
	c := &Command{
		Name:    "pins",
		Summary: "list pinned network namespaces: container, namespace, age, processes inside",
		Usage:   "pins [--state-dir DIR] [--json]",
	}
	c.Run = func(env *Env, args []string) error { return runPins(env, c, args) }
	Register(c)
}

// pinInfo is one line of `pins`.
type pinInfo struct {
	Container    string       `json:"container"`
	Root         string       `json:"root,omitempty"` // the runtime root the container id belongs to
	Path         string       `json:"path"`
	Netns        string       `json:"netns"` // net:[inode], "" when the pin is no namespace mount
	Mounted      bool         `json:"mounted"`
	AgeSeconds   float64      `json:"age_seconds"`
	Created      *time.Time   `json:"created,omitempty"`
	Bundle       string       `json:"bundle,omitempty"`
	RuntimeState string       `json:"runtime_state,omitempty"`
	Processes    []netns.Proc `json:"processes"`
}

func describePin(p *pin.Pin, now time.Time, inside map[netns.ID][]netns.Proc) pinInfo {
	pi := pinInfo{Container: p.Container(), Path: p.Path, Mounted: p.Mounted, Processes: []netns.Proc{}}
	if p.Mounted {
		pi.Netns = p.NS.String()
		if procs := inside[p.NS]; procs != nil {
			pi.Processes = procs
		}
	}
	if p.Meta != nil {
		c := p.Meta.Created
		pi.Created = &c
		pi.Bundle = p.Meta.Bundle
		pi.Root = p.Meta.Root
		pi.RuntimeState = p.Meta.RuntimeState
		pi.AgeSeconds = p.Age(now).Round(time.Millisecond).Seconds()
	}
	return pi
}

func runPins(env *Env, c *Command, args []string) error {
	var cf commonFlags
	fs := NewFlags(env, c)
	cf.addConfig(fs)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	o := cf.overrides()
	o.LogFile = os.DevNull // listing logs nothing
	s := resolveWarn(env, o, "pins")
	store := pin.Store{Dir: s.cfg.StateDir}
	pins, err := store.List()
	if err != nil {
		return &Failure{Cmd: c.Name, Err: err}
	}
	now := time.Now()
	// One pass over the host's processes and threads for every pin.
	var ids []netns.ID
	for _, p := range pins {
		if p.Mounted {
			ids = append(ids, p.NS)
		}
	}
	var inside map[netns.ID][]netns.Proc
	if len(ids) > 0 {
		inside, _, _ = netns.ProcsIn(ids...)
	}
	infos := make([]pinInfo, 0, len(pins))
	for _, p := range pins {
		infos = append(infos, describePin(p, now, inside))
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(infos)
		return nil
	}
	if len(infos) == 0 {
		fmt.Fprintf(env.Stdout, "no pins in %s\n", store.Dir)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tNETNS\tAGE\tPROCESSES")
	for _, pi := range infos {
		ns := pi.Netns
		if !pi.Mounted {
			ns = "(not mounted)"
		}
		age := "?"
		if pi.Created != nil {
			age = (time.Duration(pi.AgeSeconds * float64(time.Second))).Round(time.Second).String()
		}
		procs := "none"
		if len(pi.Processes) > 0 {
			procs = inuse.DescribeUsers(pi.Processes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", textsafe.Quote(pi.Container), ns, age, procs)
	}
	tw.Flush()
	return nil
}
