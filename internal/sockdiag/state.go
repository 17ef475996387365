package sockdiag

import "fmt"

// State is a TCP state as numbered by the kernel (include/net/tcp_states.h).
// UDP sockets report Established when connected and Close when only bound.
type State uint8

const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
	BoundInactive
)

// AllStates selects every state in a dump request.
const AllStates uint32 = 0xffffffff

var stateNames = [...]string{
	Established:   "ESTAB",
	SynSent:       "SYN-SENT",
	SynRecv:       "SYN-RECV",
	FinWait1:      "FIN-WAIT-1",
	FinWait2:      "FIN-WAIT-2",
	TimeWait:      "TIME-WAIT",
	Close:         "UNCONN",
	CloseWait:     "CLOSE-WAIT",
	LastAck:       "LAST-ACK",
	Listen:        "LISTEN",
	Closing:       "CLOSING",
	NewSynRecv:    "NEW-SYN-RECV",
	BoundInactive: "BOUND-INACTIVE",
}

// String returns the name ss(8) uses for the state.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE%d", uint8(s))
}
