package suite

import (
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// orphanDeadline bounds how long a spared orphan may live once sockreap
// has shortened its life (tcp_orphan_retries, tcp_fin_timeout). Without
// that, a zero-window orphan with a live peer probes for many minutes.
const orphanDeadline = 60 * time.Second

// testOrphan: x writes to a peer that stopped reading until its window is
// closed, then closes: an orphan in FIN_WAIT1 with unsent data, which
// holds a reference to x's namespace. On a kernel with the 6.11 fix the
// drain destroys it; without the fix it must spare it (destroying could
// leave it forever) and shorten its life so the namespace is still freed.
func testOrphan(t *T, e *env) {
	if e.caps == nil {
		t.Fatalf("doctor gave no capabilities: cannot tell whether orphans are safe to destroy")
	}
	x, p, l := pair(t)
	ln := p.Listen(t, netip.AddrPortFrom(l.B4, 7300), 4, 4096)
	c := x.Dial(t, netip.AddrPortFrom(l.B4, 7300))
	peer := nettest.Accept(t, ln) // never reads: zero window
	n := nettest.Fill(t, c)
	c.Close()
	var orphans []sockdiag.Socket
	nettest.WaitUntil(2*time.Second, func() bool {
		orphans = orphans[:0]
		for _, s := range dump(t, x) {
			if s.Orphan() {
				orphans = append(orphans, s)
			}
		}
		return len(orphans) > 0
	})
	if len(orphans) == 0 {
		t.Fatalf("no orphan in x after closing a socket with %d bytes queued: %s", n, describe(dump(t, x)))
	}
	t.Logf("orphan: %s (queued %d bytes)", describe(orphans), n)
	r, code := drain(t, e, x)
	if e.caps.OrphanSafe {
		if code != 0 || r.Remaining != 0 {
			t.Errorf("kernel has the orphan fix, but drain left %d (exit %d): %v", r.Remaining, code, r.Left)
		}
		checkEmpty(t, x, nil)
		t.Notef("orphan destroyed")
	} else {
		if r.Spared < 1 {
			t.Errorf("kernel lacks the orphan fix, but drain spared no orphan (destroyed %d): it may have made a forever orphan", r.Destroyed)
		}
		t.Logf("x sysctls after drain: %s", sysctls(x, "net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_fin_timeout"))
		took := nettest.WaitUntil(orphanDeadline, func() bool {
			for _, s := range dump(t, x) {
				if s.Orphan() {
					return false
				}
			}
			return true
		})
		if took < 0 {
			t.Fatalf("spared orphan still alive %s after drain: %s", orphanDeadline, describe(dump(t, x)))
		}
		checkEmpty(t, x, nil)
		t.Notef("orphan spared (no fix), died %s after drain", took.Round(100*time.Millisecond))
	}
	// The peer stays open until x is gone: its RST would otherwise end the
	// orphan and hide a leak.
	freeWithin(t, x, l, nettest.FreeWait)
	peer.Close()
	ln.Close()
}

func sysctls(n *nettest.Netns, keys ...string) string {
	var out []string
	for _, k := range keys {
		b, err := exec.Command("ip", "netns", "exec", n.Name, "cat", "/proc/sys/"+strings.ReplaceAll(k, ".", "/")).Output()
		if err != nil {
			out = append(out, k+"=?")
			continue
		}
		out = append(out, k+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(out, " ")
}
