package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Errors a destroy result can carry, besides one naming the socket.
var (
	// ErrGone: the socket no longer exists (ENOENT), for instance because
	// the RST of its loopback peer already killed it, or a new socket with
	// the same 4-tuple but another cookie took its place.
	ErrGone = errors.New("socket already gone")
	// ErrUnsupported: this kernel cannot destroy this socket in this state
	// (EOPNOTSUPP): no CONFIG_INET_DIAG_DESTROY, or TIME_WAIT before 6.0.
	ErrUnsupported = errors.New("kernel cannot destroy this socket")
)

// recvBufSize is the size of the fixed receive buffer. The kernel fills dump
// messages up to 32 KiB; anything larger is detected with MSG_TRUNC.
const recvBufSize = 64 << 10

// maxBatch bounds the destroy requests per sendmsg so that their acks (one
// skb each) always fit in the socket's receive buffer.
const maxBatch = 1024

// Conn is a NETLINK_SOCK_DIAG socket. It is bound to the network namespace
// it was created in. A Conn is not safe for concurrent use; open one per
// goroutine.
type Conn struct {
	fd  int
	seq uint32
	buf []byte // receive buffer, reused
	req []byte // request buffer, reused
}

var seqBase atomic.Uint32

// Open creates a sock_diag socket in the calling thread's network namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	// Room for the acks of a full batch; the forced variant needs
	// CAP_NET_ADMIN and is ignored without it.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	// Error acks carry only the failed request's header, not its payload.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return &Conn{
		fd:  fd,
		seq: seqBase.Add(1 << 24),
		buf: make([]byte, recvBufSize),
		req: make([]byte, 0, maxBatch*(sizeofNlmsg+sizeofReqV2)),
	}, nil
}

// Close releases the socket.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// ErrInterrupted is returned by Dump, after every socket was delivered, when
// the kernel flagged the dump as inconsistent (NLM_F_DUMP_INTR): the tables
// changed while it ran, so sockets may have been missed. Dump again.
var ErrInterrupted = errors.New("sockdiag: dump interrupted by concurrent changes")

// Dump streams every socket of the given family (unix.AF_INET or
// unix.AF_INET6) and protocol (unix.IPPROTO_TCP or unix.IPPROTO_UDP) whose
// state is in the states bit mask (1<<State; AllStates for all) to fn, one
// at a time. The Socket passed to fn is reused: copy it to keep it. An error
// from fn stops the dump and is returned.
func (c *Conn) Dump(family, protocol uint8, states uint32, fn func(*Socket) error) error {
	return c.DumpPorts(family, protocol, states, AllPorts, AllPorts, fn)
}

// DumpPorts is Dump restricted, in the kernel, to sockets whose local port
// is in src and remote port in dst. Disjoint ranges split a table into
// parts that several Conns can dump in parallel.
func (c *Conn) DumpPorts(family, protocol uint8, states uint32, src, dst PortRange, fn func(*Socket) error) error {
	c.seq++
	seq := c.seq
	var fbuf [4 * bcPortOpLen]byte
	bc := portFilter(fbuf[:0], src, dst)
	n := sizeofNlmsg + sizeofReqV2
	if len(bc) > 0 {
		n += unix.SizeofNlAttr + len(bc)
	}
	b := c.req[:n]
	putNlmsg(b, len(b), unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq)
	putReq(b[sizeofNlmsg:], family, protocol, states, nil)
	if len(bc) > 0 {
		a := b[sizeofNlmsg+sizeofReqV2:]
		binary.NativeEndian.PutUint16(a[0:2], uint16(unix.SizeofNlAttr+len(bc)))
		binary.NativeEndian.PutUint16(a[2:4], inetDiagReqBytecode)
		copy(a[unix.SizeofNlAttr:], bc)
	}
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send %s dump request: %w", what(family, protocol), err)
	}
	var (
		s           Socket
		interrupted bool
		stop        error
	)
	for {
		n, err := c.recv()
		if err != nil {
			return fmt.Errorf("read %s dump: %w", what(family, protocol), err)
		}
		rest := c.buf[:n]
		for len(rest) > 0 {
			m, r, err := nextMsg(rest)
			if err != nil {
				return fmt.Errorf("read %s dump: %w", what(family, protocol), err)
			}
			rest = r
			if m.seq != seq {
				continue // a late answer to an earlier, abandoned request
			}
			if m.flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.typ {
			case unix.NLMSG_DONE:
				if stop != nil {
					return stop
				}
				if interrupted {
					return ErrInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				errno, err := errnoOf(m.data)
				if err != nil {
					return fmt.Errorf("read %s dump: %w", what(family, protocol), err)
				}
				if errno == 0 {
					continue
				}
				return fmt.Errorf("dump %s: %w", what(family, protocol), errno)
			case unix.SOCK_DIAG_BY_FAMILY:
				if stop != nil {
					continue // drain the rest so the socket stays usable
				}
				if err := parseDiagMsg(m.data, protocol, &s); err != nil {
					return fmt.Errorf("read %s dump: %w", what(family, protocol), err)
				}
				if err := fn(&s); err != nil {
					stop = err
				}
			}
		}
	}
}

// Destroy asks the kernel to destroy each socket of socks (SOCK_DESTROY with
// the dumped id and cookie) and stores the outcome of socks[i] in res[i]:
// nil when destroyed, ErrGone, ErrUnsupported, or an error naming the
// socket. Requests travel in batches, many per sendmsg. The returned error
// reports a failure of the netlink transport itself.
func (c *Conn) Destroy(socks []Socket, res []error) error {
	if len(res) < len(socks) {
		return fmt.Errorf("sockdiag: %d results for %d sockets", len(res), len(socks))
	}
	for len(socks) > 0 {
		n := min(len(socks), maxBatch)
		if err := c.destroyBatch(socks[:n], res[:n]); err != nil {
			return err
		}
		socks, res = socks[n:], res[n:]
	}
	return nil
}

func (c *Conn) destroyBatch(socks []Socket, res []error) error {
	const msgLen = sizeofNlmsg + sizeofReqV2
	first := c.seq + 1
	last := len(socks) - 1
	b := c.req[:len(socks)*msgLen]
	for i := range socks {
		c.seq++
		m := b[i*msgLen : (i+1)*msgLen]
		// Only the last request asks for an ack: the kernel answers
		// failures anyway and handles the requests in order, so the
		// last ack means every request without an answer succeeded.
		// That saves one message and one skb per socket.
		flags := uint16(unix.NLM_F_REQUEST)
		if i == last {
			flags |= unix.NLM_F_ACK
		}
		putNlmsg(m, msgLen, unix.SOCK_DESTROY, flags, c.seq)
		s := &socks[i]
		putReq(m[sizeofNlmsg:], s.Family, s.Protocol, 1<<s.State, &s.ID)
		res[i] = errPending
	}
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send %d destroy requests: %w", len(socks), err)
	}
	for res[last] == errPending {
		n, err := c.recv()
		if err != nil {
			return fmt.Errorf("read destroy answers for %d requests: %w", len(socks), err)
		}
		rest := c.buf[:n]
		for len(rest) > 0 {
			m, r, err := nextMsg(rest)
			if err != nil {
				return fmt.Errorf("read destroy answers: %w", err)
			}
			rest = r
			i := int(m.seq - first)
			if m.typ != unix.NLMSG_ERROR || m.seq-first >= uint32(len(socks)) || res[i] != errPending {
				continue // not an answer to this batch
			}
			errno, err := errnoOf(m.data)
			if err != nil {
				return fmt.Errorf("read destroy answer: %w", err)
			}
			res[i] = destroyResult(&socks[i], errno)
		}
	}
	for i := range res[:last] {
		if res[i] == errPending {
			res[i] = nil
		}
	}
	return nil
}

var errPending = errors.New("pending")

func destroyResult(s *Socket, errno unix.Errno) error {
	switch errno {
	case 0:
		return nil
	case unix.ENOENT, unix.ESTALE:
		// ESTALE: the 4-tuple now belongs to a socket with another
		// cookie; ours is gone.
		return ErrGone
	case unix.EOPNOTSUPP:
		return ErrUnsupported
	}
	return fmt.Errorf("destroy %s: %w", s, errno)
}

func (c *Conn) recv() (int, error) {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_TRUNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("recvfrom", err)
		}
		if n > len(c.buf) {
			return 0, fmt.Errorf("netlink message of %d bytes exceeds the %d byte buffer", n, len(c.buf))
		}
		return n, nil
	}
}

func what(family, protocol uint8) string {
	f := "ipv4"
	if family == unix.AF_INET6 {
		f = "ipv6"
	}
	return ProtocolName(protocol) + "/" + f
}
