package reap

import (
	"fmt"
	"sort"
	"strings"
)

// Owner kinds of a socket.
const (
	OwnerProcess = "process" // a process holds a file descriptor for it
	OwnerOrphan  = "orphan"  // TCP socket whose process is gone (inode 0)
	OwnerKernel  = "kernel"  // a struct socket no process holds: NFS, CIFS, RDS, tunnels...
	OwnerMini    = "mini"    // TIME_WAIT or request (NEW_SYN_RECV) mini socket
	OwnerKept    = "held"    // held by a process outside the namespace: left alone (Options.Keep)
)

// Group counts sockets by protocol, state and owner kind.
type Group struct {
	Protocol string `json:"protocol"`
	State    string `json:"state"`
	Owner    string `json:"owner"`
	Count    int    `json:"count"`
}

// Report is the outcome of a drain.
type Report struct {
	Netns       string   `json:"netns"`
	DryRun      bool     `json:"dry_run,omitempty"`
	Found       int      `json:"found"`          // sockets in the first dump
	Destroyed   int      `json:"destroyed"`      // SOCK_DESTROY succeeded
	AlreadyGone int      `json:"already_gone"`   // ENOENT: gone before we got to it
	Unsupported int      `json:"unsupported"`    // EOPNOTSUPP answers
	Spared      int      `json:"spared"`         // left alone by policy (orphans on an unfixed kernel)
	Held        int      `json:"held,omitempty"` // left alone: a process outside the namespace holds them (Options.Keep)
	Remaining   int      `json:"remaining"`      // still there in the last dump, bound-only sockets aside
	Bound       int      `json:"bound"`          // destroyed, yet still bound to a port by a descriptor: no connection left
	Left        []Group  `json:"left"`           // what remains (bound included), grouped
	Failed      int      `json:"failed"`         // destroy errors other than the above
	Errors      []string `json:"errors,omitempty"`
	Passes      int      `json:"passes"`
	TimedOut    bool     `json:"timed_out,omitempty"`
	DurationUS  int64    `json:"duration_us"`
	Warnings    []string `json:"warnings,omitempty"`
	// FoundBy and DestroyedBy group the sockets of the first dump and
	// the destroyed ones like Left (for metrics; not in the JSON report).
	// A socket with an inode counts as a process's when Options.Occupied
	// says processes are inside, else as the kernel's.
	FoundBy     []Group `json:"-"`
	DestroyedBy []Group `json:"-"`
}

// maxErrors bounds the error strings kept in a report.
const maxErrors = 8

func (r *Report) addError(err error) {
	r.Failed++
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, err.Error())
	}
}

type groupKey struct{ proto, state, owner string }

func groupsOf(m map[groupKey]int) []Group {
	gs := make([]Group, 0, len(m))
	for k, n := range m {
		gs = append(gs, Group{Protocol: k.proto, State: k.state, Owner: k.owner, Count: n})
	}
	sort.Slice(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		if a.State != b.State {
			return a.State < b.State
		}
		return a.Owner < b.Owner
	})
	return gs
}

// String renders the report for a terminal.
func (r *Report) String() string {
	var b strings.Builder
	verb := "destroyed"
	if r.DryRun {
		verb = "would destroy"
	}
	fmt.Fprintf(&b, "netns %s: found %d, %s %d, already gone %d, remaining %d (%d passes, %.3f ms)\n",
		r.Netns, r.Found, verb, r.Destroyed, r.AlreadyGone, r.Remaining, r.Passes, float64(r.DurationUS)/1000)
	if r.Spared > 0 {
		fmt.Fprintf(&b, "  spared %d orphans (this kernel lacks the tcp_abort orphan fix; their lifetime was shortened instead)\n", r.Spared)
	}
	if r.Held > 0 {
		fmt.Fprintf(&b, "  kept %d sockets that processes outside the namespace hold\n", r.Held)
	}
	if r.Bound > 0 {
		fmt.Fprintf(&b, "  %d sockets destroyed but still bound to their port by a descriptor (state UNCONN: no connection left)\n", r.Bound)
	}
	if r.Unsupported > 0 {
		fmt.Fprintf(&b, "  %d destroy requests refused by the kernel (EOPNOTSUPP)\n", r.Unsupported)
	}
	if r.TimedOut {
		b.WriteString("  deadline reached before the namespace was empty\n")
	}
	for _, g := range r.Left {
		fmt.Fprintf(&b, "  left: %-4s %-12s %-8s %d\n", g.Protocol, g.State, g.Owner, g.Count)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", w)
	}
	return b.String()
}
