package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/sockdiag"
	"github.com/sockreap/sockreap/internal/textsafe"
)

func init() {
	c := &Command{
		Name:    "ls",
		Summary: "list every TCP and UDP socket in a network namespace with its owner",
		Usage:   "ls (--netns PATH | --pid PID) [--json]",
	}
	c.Run = func(env *Env, args []string) error { return runLs(env, c, args) }
	Register(c)
}

// lsEntry is one socket as ls prints it.
type lsEntry struct {
	Protocol string `json:"protocol"`
	State    string `json:"state"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Owner    string `json:"owner"` // process, orphan, kernel or mini
	PID      int    `json:"pid,omitempty"`
	Command  string `json:"command,omitempty"`
	Inode    uint32 `json:"inode,omitempty"`
	Cookie   string `json:"cookie"`
	RecvQ    uint32 `json:"recv_q"`
	SendQ    uint32 `json:"send_q"`
}

func runLs(env *Env, c *Command, args []string) error {
	fs := NewFlags(env, c)
	var t targetFlags
	t.register(fs)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if done, err := Parse(env, fs, args); done {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef(c.Name, "unexpected argument %q", fs.Arg(0))
	}
	ns, err := t.open(env, c.Name)
	if err != nil {
		return err
	}
	defer ns.Close()
	socks, err := reap.List(ns)
	if err != nil {
		return Failf(c.Name, "%s: %v", ns.Path, err)
	}
	want := map[uint32]bool{}
	for i := range socks {
		if socks[i].Inode != 0 {
			want[socks[i].Inode] = true
		}
	}
	held := netns.SocketHolders(want, nil, time.Time{})
	entries := make([]lsEntry, 0, len(socks))
	for i := range socks {
		s := &socks[i]
		e := lsEntry{
			Protocol: sockdiag.ProtocolName(s.Protocol),
			State:    s.State.String(),
			Local:    s.ID.Src.String(),
			Remote:   s.ID.Dst.String(),
			Inode:    s.Inode,
			Cookie:   "0x" + strconv.FormatUint(s.ID.Cookie, 16),
			RecvQ:    s.RecvQ,
			SendQ:    s.SendQ,
		}
		switch {
		case s.Mini():
			e.Owner = reap.OwnerMini
		case s.Inode == 0:
			e.Owner = reap.OwnerOrphan
		default:
			e.Owner = reap.OwnerKernel
			if p, ok := held[s.Inode]; ok {
				e.Owner, e.PID, e.Command = reap.OwnerProcess, p.PID, p.Comm
			}
		}
		entries = append(entries, e)
	}
	if *asJSON {
		_ = json.NewEncoder(env.Stdout).Encode(entries)
		return nil
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "PROTO\tSTATE\tRECV-Q\tSEND-Q\tLOCAL\tREMOTE\tOWNER")
	for _, e := range entries {
		owner := e.Owner
		if e.PID != 0 {
			owner = fmt.Sprintf("%s (pid %d)", textsafe.Quote(e.Command), e.PID)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.Protocol, e.State, e.RecvQ, e.SendQ, e.Local, e.Remote, owner)
	}
	w.Flush()
	return nil
}
