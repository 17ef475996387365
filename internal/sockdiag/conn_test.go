package sockdiag_test

import (
	"net/netip"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// loopback makes a namespace with a listener on addr and n connections to
// it, and returns a sock_diag socket inside it (closed at cleanup).
func loopback(t *testing.T, addr string, n int) *sockdiag.Conn {
	t.Helper()
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	ap := netip.MustParseAddrPort(addr)
	lst := x.Listen(t, ap, 16, 0)
	for range n {
		x.Dial(t, ap)
		nettest.Accept(t, lst)
	}
	var c *sockdiag.Conn
	if err := x.NS.Do(func() (err error) { c, err = sockdiag.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDestroyBatchMatchesAnswers destroys, in one batch, live sockets and
// stale ids (right 4-tuple, wrong cookie): each answer must land on its own
// request, and a stale cookie must never kill the live socket.
func TestDestroyBatchMatchesAnswers(t *testing.T) {
	c := loopback(t, "127.0.0.1:9400", 4)
	var clients []sockdiag.Socket
	err := c.Dump(unix.AF_INET, unix.IPPROTO_TCP, sockdiag.AllStates, func(s *sockdiag.Socket) error {
		if s.State == sockdiag.Established && s.ID.Dst.Port() == 9400 {
			clients = append(clients, *s)
		}
		return nil
	})
	if err != nil || len(clients) != 4 {
		t.Fatalf("dump: %d clients, %v", len(clients), err)
	}
	// Batch: stale, live, stale, live, stale, live, live (last asks the ack).
	stale := func(s sockdiag.Socket) sockdiag.Socket { s.ID.Cookie ^= 0xdead; return s }
	batch := []sockdiag.Socket{stale(clients[0]), clients[0], stale(clients[1]), clients[1], stale(clients[2]), clients[2], clients[3]}
	want := []error{sockdiag.ErrGone, nil, sockdiag.ErrGone, nil, sockdiag.ErrGone, nil, nil}
	res := make([]error, len(batch))
	if err := c.Destroy(batch, res); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("request %d (%s): %v, want %v", i, &batch[i], res[i], want[i])
		}
	}
	// Destroying the same ids again: all gone now.
	res2 := make([]error, 4)
	if err := c.Destroy(clients, res2); err != nil {
		t.Fatal(err)
	}
	for i, e := range res2 {
		if e != sockdiag.ErrGone {
			t.Errorf("second destroy %d: %v, want ErrGone", i, e)
		}
	}
}

// TestDumpPortsFilters checks the kernel applies the port filter: disjoint
// ranges partition the table exactly.
func TestDumpPortsFilters(t *testing.T) {
	c := loopback(t, "127.0.0.1:9410", 6)
	count := func(src, dst sockdiag.PortRange) int {
		n := 0
		err := c.DumpPorts(unix.AF_INET, unix.IPPROTO_TCP, sockdiag.AllStates, src, dst, func(s *sockdiag.Socket) error {
			if s.ID.Src.Port() < src.Lo || s.ID.Src.Port() > src.Hi || s.ID.Dst.Port() < dst.Lo || s.ID.Dst.Port() > dst.Hi {
				t.Errorf("filter %v/%v let %s through", src, dst, s)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	total := count(sockdiag.AllPorts, sockdiag.AllPorts)
	if total != 13 {
		t.Fatalf("unfiltered dump: %d sockets, want 13 (listener and 6 connections)", total)
	}
	if n := count(sockdiag.PortRange{Lo: 9410, Hi: 9410}, sockdiag.AllPorts); n != 7 {
		t.Errorf("local port 9410: %d sockets, want 7 (listener and 6 accepted)", n)
	}
	if n := count(sockdiag.AllPorts, sockdiag.PortRange{Lo: 9410, Hi: 9410}); n != 6 {
		t.Errorf("remote port 9410: %d sockets, want the 6 clients", n)
	}
	// Quadrants cover everything exactly once.
	lo, hi := sockdiag.PortRange{Lo: 0, Hi: 32767}, sockdiag.PortRange{Lo: 32768, Hi: 65535}
	sum := 0
	for _, s := range []sockdiag.PortRange{lo, hi} {
		for _, d := range []sockdiag.PortRange{lo, hi} {
			sum += count(s, d)
		}
	}
	if sum != total {
		t.Errorf("quadrants hold %d sockets, the table %d", sum, total)
	}
}
