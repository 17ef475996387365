package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Wire sizes of the kernel structures (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID  = 48 // struct inet_diag_sockid
	sizeofReqV2   = 8 + sizeofSockID
	sizeofDiagMsg = 4 + sizeofSockID + 20 // struct inet_diag_msg
	sizeofNlmsg   = unix.SizeofNlMsghdr
)

// ID is the identity of a socket as the kernel reports it in a dump and
// expects it back in a destroy request. The cookie makes it exact: a socket
// that reuses the same 4-tuple has a different cookie.
type ID struct {
	Src     netip.AddrPort
	Dst     netip.AddrPort
	Ifindex uint32
	Cookie  uint64
}

// Socket is one entry of a dump.
type Socket struct {
	Family   uint8 // unix.AF_INET or unix.AF_INET6
	Protocol uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	State    State
	Timer    uint8 // pending timer: 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe
	ID       ID
	RecvQ    uint32
	SendQ    uint32
	UID      uint32
	Inode    uint32 // 0 when no struct socket is attached (orphans, mini sockets)
}

// Orphan reports whether the socket is a full TCP socket whose process has
// gone: it still holds a reference to its network namespace.
func (s *Socket) Orphan() bool {
	if s.Protocol != unix.IPPROTO_TCP || s.Inode != 0 || s.Mini() {
		return false
	}
	// Only close() leads to these states without a descriptor; a
	// connection waiting in a listener's accept queue also has no inode,
	// but it is not dead and dies with its listener.
	switch s.State {
	case FinWait1, FinWait2, Closing, LastAck:
		return true
	}
	return false
}

// TimerTimeWait is the timer a time-wait mini socket reports.
const TimerTimeWait = 3

// Mini reports whether the socket is a time-wait mini socket (TIME_WAIT, or
// FIN_WAIT2 after close with a short tcp_fin_timeout) or a request socket
// (reported in SYN_RECV): these hold no namespace reference and no process.
func (s *Socket) Mini() bool {
	if s.Protocol != unix.IPPROTO_TCP {
		return false
	}
	switch {
	case s.State == TimeWait || s.State == NewSynRecv:
		return true
	case s.Timer == TimerTimeWait:
		return true
	case s.State == SynRecv && s.Inode == 0:
		return true
	}
	return false
}

func (s *Socket) String() string {
	return fmt.Sprintf("%s %s %s -> %s cookie %#x", ProtocolName(s.Protocol), s.State, s.ID.Src, s.ID.Dst, s.ID.Cookie)
}

// ProtocolName returns "tcp", "udp" or the number.
func ProtocolName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", p)
}

// errShort is returned for any message shorter than its declared layout.
var errShort = errors.New("sockdiag: truncated message")

// putReq encodes a struct inet_diag_req_v2 into b (len >= sizeofReqV2).
func putReq(b []byte, family, protocol uint8, states uint32, id *ID) {
	b[0] = family
	b[1] = protocol
	b[2] = 0 // no extensions: the drain needs only the fixed part
	b[3] = 0
	binary.NativeEndian.PutUint32(b[4:8], states)
	putSockID(b[8:8+sizeofSockID], family, id)
}

func putSockID(b []byte, family uint8, id *ID) {
	clear(b)
	if id == nil {
		// Dumps ignore the id; a cookie of all ones means "no cookie".
		binary.NativeEndian.PutUint32(b[40:44], ^uint32(0))
		binary.NativeEndian.PutUint32(b[44:48], ^uint32(0))
		return
	}
	binary.BigEndian.PutUint16(b[0:2], id.Src.Port())
	binary.BigEndian.PutUint16(b[2:4], id.Dst.Port())
	putAddr(b[4:20], family, id.Src.Addr())
	putAddr(b[20:36], family, id.Dst.Addr())
	binary.NativeEndian.PutUint32(b[36:40], id.Ifindex)
	binary.NativeEndian.PutUint32(b[40:44], uint32(id.Cookie))
	binary.NativeEndian.PutUint32(b[44:48], uint32(id.Cookie>>32))
}

func putAddr(b []byte, family uint8, a netip.Addr) {
	if family == unix.AF_INET {
		v4 := a.Unmap().As4()
		copy(b[0:4], v4[:])
		return
	}
	v6 := a.As16()
	copy(b, v6[:])
}

// parseDiagMsg decodes the fixed part of a struct inet_diag_msg.
func parseDiagMsg(b []byte, protocol uint8, s *Socket) error {
	if len(b) < sizeofDiagMsg {
		return errShort
	}
	family := b[0]
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return fmt.Errorf("sockdiag: unexpected address family %d in dump", family)
	}
	s.Family = family
	s.Protocol = protocol
	s.State = State(b[1])
	s.Timer = b[2]
	id := b[4 : 4+sizeofSockID]
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	s.ID.Src = netip.AddrPortFrom(addr(family, id[4:20]), sport)
	s.ID.Dst = netip.AddrPortFrom(addr(family, id[20:36]), dport)
	s.ID.Ifindex = binary.NativeEndian.Uint32(id[36:40])
	s.ID.Cookie = uint64(binary.NativeEndian.Uint32(id[40:44])) | uint64(binary.NativeEndian.Uint32(id[44:48]))<<32
	rest := b[4+sizeofSockID:]
	// expires (4), rqueue, wqueue, uid, inode
	s.RecvQ = binary.NativeEndian.Uint32(rest[4:8])
	s.SendQ = binary.NativeEndian.Uint32(rest[8:12])
	s.UID = binary.NativeEndian.Uint32(rest[12:16])
	s.Inode = binary.NativeEndian.Uint32(rest[16:20])
	return nil
}

func addr(family uint8, b []byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[0:4]))
	}
	return netip.AddrFrom16([16]byte(b[0:16]))
}

// nlmsg is one netlink message inside a receive buffer.
type nlmsg struct {
	typ   uint16
	flags uint16
	seq   uint32
	data  []byte
}

// nextMsg splits the first netlink message off b. It returns the message,
// the remainder and an error for a malformed header.
func nextMsg(b []byte) (nlmsg, []byte, error) {
	if len(b) < sizeofNlmsg {
		return nlmsg{}, nil, errShort
	}
	l := binary.NativeEndian.Uint32(b[0:4])
	if l < sizeofNlmsg || uint64(l) > uint64(len(b)) {
		return nlmsg{}, nil, fmt.Errorf("sockdiag: bad netlink message length %d (buffer %d)", l, len(b))
	}
	m := nlmsg{
		typ:   binary.NativeEndian.Uint16(b[4:6]),
		flags: binary.NativeEndian.Uint16(b[6:8]),
		seq:   binary.NativeEndian.Uint32(b[8:12]),
		data:  b[sizeofNlmsg:l],
	}
	adv := nlmAlign(int(l))
	if adv > len(b) {
		adv = len(b)
	}
	return m, b[adv:], nil
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// errnoOf decodes the error code of an NLMSG_ERROR payload (0 is an ack).
func errnoOf(data []byte) (unix.Errno, error) {
	if len(data) < 4 {
		return 0, errShort
	}
	code := int32(binary.NativeEndian.Uint32(data[0:4]))
	if code > 0 {
		return 0, fmt.Errorf("sockdiag: positive error code %d in NLMSG_ERROR", code)
	}
	return unix.Errno(-code), nil
}

func putNlmsg(b []byte, length int, typ, flags uint16, seq uint32) {
	binary.NativeEndian.PutUint32(b[0:4], uint32(length))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	binary.NativeEndian.PutUint32(b[12:16], 0)
}
