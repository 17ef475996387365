package metrics_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/dyingns"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/promtest"
)

// leak makes n network namespaces that only an orphaned connection keeps
// alive (no process, file or mount holds them): each sends to a peer
// namespace that does not read, closes its socket and loses its name.
// It returns their inodes and the peer's accepted sockets, whose reset
// frees them.
func leak(t *testing.T, n int) ([]uint64, []*nettest.Socket) {
	t.Helper()
	peer := nettest.NewNetns(t)
	var inodes []uint64
	var accepted []*nettest.Socket
	for i := range n {
		x := nettest.NewNetns(t)
		l := nettest.Connect(t, x, peer)
		ap := netip.AddrPortFrom(l.B4, uint16(7900+i))
		ln := peer.Listen(t, ap, 4, 4096)
		c := x.Dial(t, ap)
		accepted = append(accepted, nettest.Accept(t, ln))
		nettest.Fill(t, c)
		c.Close() // an orphan in FIN-WAIT-1, retransmitting to a closed window
		inodes = append(inodes, uint64(x.NS.ID.Ino))
		x.NS.Close()
		x.NS = nil
		nettest.Run(t, "ip", "netns", "del", x.Name)
	}
	return inodes, accepted
}

// The dying-namespace count sees namespaces that only orphans hold, and
// doctor puts it in the exposition; the census before, with and after the
// leak is the measurement docs/monitoring.md quotes.
func TestDyingNamespacesCounted(t *testing.T) {
	nettest.RequireRoot(t)
	if _, err := os.Stat("/sys/kernel/slab/net_namespace"); err != nil {
		if _, err := os.Stat("/proc/slabinfo"); err != nil {
			t.Skip("no slab figures on this kernel")
		}
	}
	const n = 10
	exact := dyingns.Options{Shrink: true}
	before, err := dyingns.Count(exact)
	if err != nil {
		t.Fatal(err)
	}
	inodes, accepted := leak(t, n)
	reach := dyingns.Reachable()
	for _, ino := range inodes {
		if reach[ino] {
			t.Errorf("leaked namespace net:[%d] counted as reachable", ino)
		}
	}
	rough, err := dyingns.Count(dyingns.Options{}) // before a shrink
	if err != nil {
		t.Fatal(err)
	}
	with, err := dyingns.Count(exact)
	if err != nil {
		t.Fatal(err)
	}
	if with.Upper < n {
		t.Errorf("census with %d leaked namespaces: %+v; want at least %d dying", n, with, n)
	}
	if rough.Lower > with.Upper+2 || rough.Upper+2 < with.Lower {
		t.Errorf("bounds without shrink %d..%d do not hold the exact count %d..%d", rough.Lower, rough.Upper, with.Lower, with.Upper)
	}

	// doctor: the line and the gauge.
	dir := t.TempDir()
	out := nettest.Run(t, hookBin(), "doctor", "--exact", "--metrics-dir", dir)
	if !bytes.Contains([]byte(out), []byte("dying netns")) {
		t.Errorf("doctor has no dying netns line:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, metrics.PromFile))
	if err != nil {
		t.Fatal(err)
	}
	f, err := promtest.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Value(metrics.NameDyingNetns, map[string]string{"bound": "upper"}); !ok || v < n {
		t.Errorf("sockreap_dying_netns{bound=upper} = %v (present %v), want at least %d\n%s", v, ok, n, f.Series(metrics.NameDyingNetns))
	}
	if _, ok := f.Value(metrics.NameKernelInfo, nil); !ok && len(f[metrics.NameKernelInfo].GetMetric()) != 1 {
		t.Errorf("no kernel info after doctor:\n%s", b)
	}

	// The peer resets: the orphans die, and with them the namespaces.
	for _, s := range accepted {
		s.Reset()
	}
	gone := nettest.WaitUntil(10*time.Second, func() bool {
		c, err := dyingns.Count(exact)
		return err == nil && c.Upper <= with.Lower-n+2
	})
	after, _ := dyingns.Count(exact)
	t.Logf("measurement (exact: slab shrunk before each count): before %s; with %d leaked %s; without shrink %s; after the peer's RST %s (%v)",
		census(before), n, census(with), census(rough), census(after), gone)
	if id, err := netns.Self(); err == nil && !reach[uint64(id.Ino)] {
		t.Errorf("own namespace %s not reachable", id)
	}
}

func census(c dyingns.Census) string {
	return fmt.Sprintf("alive %d..%d reachable %d dying %d..%d exact=%v", c.AliveLower, c.Alive, c.Reachable, c.Lower, c.Upper, c.Exact)
}
