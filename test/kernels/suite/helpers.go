package suite

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// dump lists every TCP and UDP socket of n, IPv4 and IPv6, with a fresh
// sock_diag dump made from inside n (independent of sockreap-hook).
func dump(t *T, n *nettest.Netns) []sockdiag.Socket {
	t.Helper()
	socks, err := reap.List(n.NS)
	if err != nil {
		t.Fatalf("dump sockets of %s: %v", n.Name, err)
	}
	return socks
}

func describe(socks []sockdiag.Socket) string {
	var s []string
	for i := range socks {
		s = append(s, fmt.Sprintf("%s inode %d", socks[i].String(), socks[i].Inode))
	}
	return strings.Join(s, "; ")
}

// drain runs `sockreap-hook drain --netns PATH --json` on n and returns the
// report and exit code (0 nothing left, 1 sockets remain).
func drain(t *T, e *env, n *nettest.Netns, extra ...string) (*reap.Report, int) {
	t.Helper()
	args := append([]string{"drain", "--netns", n.Path, "--json"}, extra...)
	cmd := exec.Command(e.cfg.Hook, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sockreap-hook %s: %v", strings.Join(args, " "), err)
	}
	if code != 0 && code != 1 {
		t.Fatalf("sockreap-hook %s: exit %d: %s%s", strings.Join(args, " "), code, out, stderr.String())
	}
	var r reap.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("sockreap-hook drain --json printed no report (exit %d): %v\n%s%s", code, err, out, stderr.String())
	}
	t.Logf("drain (exit %d): found %d destroyed %d already-gone %d unsupported %d spared %d remaining %d left %v passes %d in %d µs",
		code, r.Found, r.Destroyed, r.AlreadyGone, r.Unsupported, r.Spared, r.Remaining, r.Left, r.Passes, r.DurationUS)
	for _, w := range r.Warnings {
		t.Logf("drain warning: %s", w)
	}
	for _, er := range r.Errors {
		t.Logf("drain error: %s", er)
	}
	return &r, code
}

// lsEntry is one socket as `sockreap-hook ls --json` prints it. Only the
// fields the suite looks at are decoded; Raw keeps the whole entry.
type lsEntry struct {
	Protocol string `json:"protocol"`
	State    string `json:"state"`
	Local    string `json:"local"`
	Owner    any    `json:"owner"`
	Raw      map[string]any
}

// ownerKind renders the owner however ls encodes it (a kind string, or an
// object with a kind).
func (l lsEntry) ownerKind() string {
	switch o := l.Owner.(type) {
	case string:
		return o
	case map[string]any:
		if k, ok := o["kind"].(string); ok {
			return k
		}
	}
	if k, ok := l.Raw["owner_kind"].(string); ok {
		return k
	}
	return fmt.Sprint(l.Owner)
}

// ls runs `sockreap-hook ls --netns PATH --json`.
func ls(t *T, e *env, n *nettest.Netns) []lsEntry {
	t.Helper()
	out, err := exec.Command(e.cfg.Hook, "ls", "--netns", n.Path, "--json").Output()
	if err != nil {
		t.Fatalf("sockreap-hook ls --netns %s --json: %v %s", n.Path, err, stderrOf(err))
	}
	var raw []map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		var obj map[string]json.RawMessage
		if err2 := json.Unmarshal(out, &obj); err2 != nil || obj["sockets"] == nil {
			t.Fatalf("sockreap-hook ls --json: unexpected output: %v\n%s", err, out)
		}
		if err := json.Unmarshal(obj["sockets"], &raw); err != nil {
			t.Fatalf("sockreap-hook ls --json: sockets: %v", err)
		}
	}
	var l []lsEntry
	for _, m := range raw {
		b, _ := json.Marshal(m)
		var en lsEntry
		_ = json.Unmarshal(b, &en)
		en.Raw = m
		l = append(l, en)
	}
	return l
}

// checkEmpty asserts that a fresh dump and ss both find no socket in n
// except those allowed (e.g. TIME_WAIT on a kernel that cannot destroy it).
func checkEmpty(t *T, n *nettest.Netns, allow func(*sockdiag.Socket) bool) {
	t.Helper()
	var left []sockdiag.Socket
	allowed := map[string]bool{} // "STATE local" of allowed sockets, to match ss lines
	for _, s := range dump(t, n) {
		if allow != nil && allow(&s) {
			allowed[s.State.String()+" "+s.ID.Src.String()] = true
		} else {
			left = append(left, s)
		}
	}
	if len(left) > 0 {
		t.Errorf("fresh dump after drain still lists %d sockets: %s", len(left), describe(left))
	}
	var ssLeft []string
	for _, l := range n.SS(t) {
		// netid state recv-q send-q local peer
		f := strings.Fields(l)
		if len(f) >= 5 && allowed[f[1]+" "+f[4]] {
			continue
		}
		ssLeft = append(ssLeft, l)
	}
	if len(ssLeft) > 0 {
		t.Errorf("ss after drain still lists %d sockets: %s", len(ssLeft), strings.Join(ssLeft, " | "))
	}
}

// freeWithin drops the last references the suite holds on n (its sockets
// must be closed already), deletes it, and asserts that the namespace is
// destroyed within d: the veth end the link had in n vanishes together with
// the namespace, so its peer end in the other namespace disappears.
func freeWithin(t *T, n *nettest.Netns, l *nettest.Link, d time.Duration) time.Duration {
	t.Helper()
	if n.NS != nil {
		n.NS.Close()
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v %s", n.Name, err, out)
	}
	peer, peerName := l.B, l.NameB
	if l.B == n {
		peer, peerName = l.A, l.NameA
	}
	took := nettest.WaitUntil(d, func() bool { return nettest.LinkGone(peer, peerName) })
	if took < 0 {
		t.Errorf("namespace %s not freed within %s of its last reference: veth peer %s still in %s", n.Name, d, peerName, peer.Name)
	} else {
		t.Logf("namespace freed %s after its last reference went (veth peer gone)", took.Round(time.Millisecond))
	}
	return took
}
