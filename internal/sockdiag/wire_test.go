package sockdiag

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// diagMsg builds a SOCK_DIAG_BY_FAMILY message as the kernel sends it.
func diagMsg(seq uint32, flags uint16, family uint8, state State, id ID, inode uint32) []byte {
	b := make([]byte, sizeofNlmsg+sizeofDiagMsg)
	putNlmsg(b, len(b), unix.SOCK_DIAG_BY_FAMILY, flags, seq)
	m := b[sizeofNlmsg:]
	m[0] = family
	m[1] = uint8(state)
	putSockID(m[4:4+sizeofSockID], family, &id)
	binary.NativeEndian.PutUint32(m[4+sizeofSockID+16:], inode)
	return b
}

func TestParseRoundTrip(t *testing.T) {
	for _, id := range []ID{
		{Src: netip.MustParseAddrPort("192.0.2.1:80"), Dst: netip.MustParseAddrPort("192.0.2.2:40000"), Ifindex: 3, Cookie: 0x1122334455667788},
		{Src: netip.MustParseAddrPort("[2001:db8::1]:443"), Dst: netip.MustParseAddrPort("[2001:db8::2]:5000"), Cookie: 7},
	} {
		fam := uint8(unix.AF_INET6)
		if id.Src.Addr().Is4() {
			fam = unix.AF_INET
		}
		b := diagMsg(9, unix.NLM_F_MULTI, fam, FinWait1, id, 0)
		m, rest, err := nextMsg(b)
		if err != nil || len(rest) != 0 || m.seq != 9 || m.typ != unix.SOCK_DIAG_BY_FAMILY {
			t.Fatalf("nextMsg: %+v rest %d err %v", m, len(rest), err)
		}
		var s Socket
		if err := parseDiagMsg(m.data, unix.IPPROTO_TCP, &s); err != nil {
			t.Fatal(err)
		}
		if s.ID != id || s.State != FinWait1 || !s.Orphan() {
			t.Errorf("parsed %+v, want id %+v in FIN-WAIT-1 as orphan", s, id)
		}
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"short header": {1, 2, 3},
		"length zero":  make([]byte, 16),
		"length past":  func() []byte { b := make([]byte, 16); binary.NativeEndian.PutUint32(b, 64); return b }(),
	} {
		if _, _, err := nextMsg(b); err == nil {
			t.Errorf("%s: nextMsg accepted %x", name, b)
		}
	}
	var s Socket
	if err := parseDiagMsg(make([]byte, sizeofDiagMsg-1), unix.IPPROTO_TCP, &s); err == nil {
		t.Error("parseDiagMsg accepted a short message")
	}
	bad := make([]byte, sizeofDiagMsg)
	bad[0] = 99
	if err := parseDiagMsg(bad, unix.IPPROTO_TCP, &s); err == nil {
		t.Error("parseDiagMsg accepted an unknown family")
	}
}

func TestStateNames(t *testing.T) {
	if FinWait1.String() != "FIN-WAIT-1" || TimeWait.String() != "TIME-WAIT" || State(99).String() != "STATE99" {
		t.Errorf("state names: %s %s %s", FinWait1, TimeWait, State(99))
	}
}

// FuzzParse feeds arbitrary bytes to the receive-side parser: it must
// never panic and never loop, whatever the kernel (or a bug) sends.
func FuzzParse(f *testing.F) {
	f.Add(diagMsg(1, unix.NLM_F_MULTI, unix.AF_INET, Established, ID{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2")}, 5))
	f.Add(diagMsg(1, unix.NLM_F_DUMP_INTR, unix.AF_INET6, TimeWait, ID{Src: netip.MustParseAddrPort("[::1]:1"), Dst: netip.MustParseAddrPort("[::1]:2")}, 0))
	f.Add([]byte{20, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := 0; len(b) > 0; i++ {
			if i > len(b)+1 {
				t.Fatal("parser does not advance")
			}
			m, rest, err := nextMsg(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatalf("nextMsg did not consume input: %d -> %d", len(b), len(rest))
			}
			var s Socket
			_ = parseDiagMsg(m.data, unix.IPPROTO_TCP, &s)
			_, _ = errnoOf(m.data)
			b = rest
		}
	})
}
