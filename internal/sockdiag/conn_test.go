package sockdiag_test

import (
	"net/netip"
	"testing"

	"github.com/sockreap/sockreap/internal/nettest"
	"github.com/sockreap/sockreap/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// TestDestroyBatchMatchesAnswers destroys, in one batch, live sockets and
// stale ids (right 4-tuple, wrong cookie): each answer must land on its own
// request, and a stale cookie must never kill the live socket.
func TestDestroyBatchMatchesAnswers(t *testing.T) {
	nettest.RequireRoot(t)
	x := nettest.NewNetns(t)
	lst := x.Listen(t, netip.MustParseAddrPort("127.0.0.1:9400"), 16, 0)
	for range 4 {
		x.Dial(t, netip.MustParseAddrPort("127.0.0.1:9400"))
		nettest.Accept(t, lst)
	}
	var c *sockdiag.Conn
	if err := x.NS.Do(func() (err error) { c, err = sockdiag.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
