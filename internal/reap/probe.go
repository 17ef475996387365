package reap

import "errors"

// Capabilities is what the running kernel can do, found by Probe.
type Capabilities struct {
	Kernel     string   `json:"kernel"`      // uname release
	Destroy    bool     `json:"destroy"`     // SOCK_DESTROY works at all (CONFIG_INET_DIAG_DESTROY)
	TCP        bool     `json:"tcp"`         // established TCP sockets can be destroyed
	UDP        bool     `json:"udp"`         // UDP sockets can be destroyed
	TimeWait   bool     `json:"time_wait"`   // TIME_WAIT sockets can be destroyed (~6.0+)
	OrphanSafe bool     `json:"orphan_safe"` // destroying an orphan frees it (6.11 fix)
	Notes      []string `json:"notes,omitempty"`
}

// Probe finds the running kernel's capabilities in a scratch namespace.
func Probe() (*Capabilities, error) { return nil, errors.New("not implemented") }

// ProbeCached returns the capabilities recorded in dir/probe.json when they
// were found on this kernel since this boot, and probes (and records them)
// otherwise. Hooks use it so that only the first container stop after a boot
// pays for the probe.
func ProbeCached(dir string) (*Capabilities, error) { return Probe() }
