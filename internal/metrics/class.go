package metrics

// StateClass maps a socket state as ss(8) names it (reap's groups) to the
// state label: a few classes instead of twelve states keep the series few
// and say what matters for a dying namespace.
func StateClass(state string) string {
	switch state {
	case "LISTEN":
		return "listen"
	case "ESTAB":
		return "established"
	case "SYN-SENT", "SYN-RECV", "NEW-SYN-RECV":
		return "opening"
	case "FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "LAST-ACK", "CLOSE-WAIT":
		return "closing"
	case "TIME-WAIT":
		return "time_wait"
	case "UNCONN", "BOUND-INACTIVE":
		return "unconnected"
	}
	return "other"
}
