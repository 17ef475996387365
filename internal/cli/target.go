package cli

import (
	"flag"
	"fmt"

	"github.com/sockreap/sockreap/internal/netns"
)

// targetFlags are the --netns/--pid flags of ls and drain.
type targetFlags struct {
	path string
	pid  int
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.path, "netns", "", "network namespace file: /var/run/netns/NAME, a pin, /proc/PID/ns/net")
	fs.IntVar(&t.pid, "pid", 0, "use the network namespace of process `PID`")
}

// open opens the target namespace after refusing the host's and our own.
// Failing that, it returns a *UsageError.
func (t *targetFlags) open(env *Env, cmd string) (*netns.NS, error) {
	if (t.path == "") == (t.pid == 0) {
		return nil, Usagef(cmd, "give exactly one of --netns PATH or --pid PID")
	}
	var (
		ns  *netns.NS
		err error
	)
	if t.path != "" {
		ns, err = netns.Open(t.path)
	} else {
		ns, err = netns.OpenPID(t.pid)
	}
	if err != nil {
		return nil, Usagef(cmd, "%v", err)
	}
	warning, err := netns.CheckTarget(ns.ID)
	if err != nil {
		ns.Close()
		return nil, Usagef(cmd, "refusing %s: %v", ns.Path, err)
	}
	if warning != "" {
		fmt.Fprintf(env.Stderr, "%s %s: warning: %s\n", Prog, cmd, warning)
	}
	return ns, nil
}
