package nettest

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// Socket is a raw socket file descriptor created inside a namespace; it is
// closed at cleanup unless closed (or abandoned as an orphan) before.
type Socket struct {
	FD     int
	closed bool
}

// Close closes the descriptor. Closing a TCP socket with unsent data to a
// peer that does not read leaves an orphan in the namespace.
func (s *Socket) Close() {
	if !s.closed {
		unix.Close(s.FD)
		s.closed = true
	}
}

// Reset closes the socket with SO_LINGER 0: the kernel sends a RST.
func (s *Socket) Reset() {
	_ = unix.SetsockoptLinger(s.FD, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	s.Close()
}

// NewSocket creates a socket of the given type inside n (for example
// unix.SOCK_STREAM) for the family of addr.
func (n *Netns) NewSocket(t T, typ int, addr netip.Addr) *Socket {
	t.Helper()
	fam := unix.AF_INET6
	if addr.Is4() {
		fam = unix.AF_INET
	}
	var fd int
	err := n.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("socket in %s: %v", n.Name, err)
	}
	s := &Socket{FD: fd}
	t.Cleanup(s.Reset)
	return s
}

// Listen opens a TCP listener on ap inside n with the given backlog. With
// a small rcvbuf the connections it accepts (and never reads) close their
// window quickly.
func (n *Netns) Listen(t T, ap netip.AddrPort, backlog, rcvbuf int) *Socket {
	t.Helper()
	s := n.NewSocket(t, unix.SOCK_STREAM, ap.Addr())
	_ = unix.SetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if rcvbuf > 0 {
		_ = unix.SetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	must(t, unix.Bind(s.FD, Sockaddr(ap)), "bind", ap)
	must(t, unix.Listen(s.FD, backlog), "listen", ap)
	return s
}

// Dial connects a new TCP socket in n to ap (blocking).
func (n *Netns) Dial(t T, ap netip.AddrPort) *Socket {
	t.Helper()
	s := n.NewSocket(t, unix.SOCK_STREAM, ap.Addr())
	must(t, unix.Connect(s.FD, Sockaddr(ap)), "connect", ap)
	return s
}

// DialAsync starts a TCP connect to ap without waiting for it to complete
// (SYN_SENT while nothing answers).
func (n *Netns) DialAsync(t T, ap netip.AddrPort) *Socket {
	t.Helper()
	s := n.NewSocket(t, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, ap.Addr())
	if err := unix.Connect(s.FD, Sockaddr(ap)); err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect %s: %v", ap, err)
	}
	return s
}

// Accept accepts one connection on listener l.
func Accept(t T, l *Socket) *Socket {
	t.Helper()
	fd, _, err := unix.Accept4(l.FD, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	s := &Socket{FD: fd}
	t.Cleanup(s.Reset)
	return s
}

// Fill writes to a non-blocking copy of s until the kernel refuses more
// (the peer stopped reading and its window is closed), then returns the
// number of bytes queued.
func Fill(t T, s *Socket) int {
	t.Helper()
	_ = unix.SetNonblock(s.FD, true)
	buf := make([]byte, 64<<10)
	total := 0
	for {
		n, err := unix.Write(s.FD, buf)
		if err == unix.EAGAIN {
			return total
		}
		if err != nil {
			t.Fatalf("fill: %v", err)
		}
		total += n
	}
}

// Sockaddr converts an address and port to a unix.Sockaddr.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// BindUDP opens a UDP socket bound to ap inside n, connected to peer when
// peer is valid.
func (n *Netns) BindUDP(t T, ap, peer netip.AddrPort) *Socket {
	t.Helper()
	s := n.NewSocket(t, unix.SOCK_DGRAM, ap.Addr())
	must(t, unix.Bind(s.FD, Sockaddr(ap)), "bind udp", ap)
	if peer.IsValid() {
		must(t, unix.Connect(s.FD, Sockaddr(peer)), "connect udp", peer)
	}
	return s
}

func must(t T, err error, what string, ap netip.AddrPort) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s %s: %v", what, ap, err)
	}
}
