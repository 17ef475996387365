package sockdiag

import "encoding/binary"

// PortRange is an inclusive range of port numbers.
type PortRange struct{ Lo, Hi uint16 }

// AllPorts selects every port.
var AllPorts = PortRange{0, 65535}

// inet_diag filter bytecode (include/uapi/linux/inet_diag.h): a program of
// struct inet_diag_bc_op {u8 code; u8 yes; u16 no}; a port comparison is
// followed by a second op whose no field holds the port. The program
// accepts a socket when a jump lands exactly on its end and rejects it when
// one lands 4 bytes past it.
const (
	inetDiagReqBytecode = 1 // INET_DIAG_REQ_BYTECODE attribute
	bcSGE               = 2 // INET_DIAG_BC_S_GE: local port >= operand
	bcSLE               = 3 // INET_DIAG_BC_S_LE
	bcDGE               = 4 // INET_DIAG_BC_D_GE: remote port >= operand
	bcDLE               = 5 // INET_DIAG_BC_D_LE
	bcPortOpLen         = 8
)

// portFilter appends to b the bytecode selecting local ports in src and
// remote ports in dst; nothing when both are AllPorts.
func portFilter(b []byte, src, dst PortRange) []byte {
	type cmp struct {
		code uint8
		port uint16
	}
	var ops []cmp
	if src.Lo > 0 {
		ops = append(ops, cmp{bcSGE, src.Lo})
	}
	if src.Hi < 65535 {
		ops = append(ops, cmp{bcSLE, src.Hi})
	}
	if dst.Lo > 0 {
		ops = append(ops, cmp{bcDGE, dst.Lo})
	}
	if dst.Hi < 65535 {
		ops = append(ops, cmp{bcDLE, dst.Hi})
	}
	total := len(ops) * bcPortOpLen
	for i, op := range ops {
		var w [bcPortOpLen]byte
		w[0] = op.code
		w[1] = bcPortOpLen                                                   // yes: the next comparison, or the end (accept)
		binary.NativeEndian.PutUint16(w[2:4], uint16(total-i*bcPortOpLen+4)) // no: past the end (reject)
		binary.NativeEndian.PutUint16(w[6:8], op.port)                       // operand op {0, 0, port}
		b = append(b, w[:]...)
	}
	return b
}
