// Package suite is the kernel scenario suite: each scenario builds a real
// namespace with real sockets, drains it with sockreap-hook and checks with
// a fresh sock_diag dump and ss(8) that nothing is left and that the
// namespace is freed. The same code runs inside each qemu guest (as init,
// test/kernels/guest) and on the host kernel.
package suite

import "encoding/json"

// Status of a scenario.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Result is what one run of the suite on one kernel reports.
type Result struct {
	Kernel     string          `json:"kernel"`  // uname -r
	Version    string          `json:"version"` // /proc/version
	Doctor     json.RawMessage `json:"doctor,omitempty"`
	DoctorErr  string          `json:"doctor_error,omitempty"`
	Scenarios  []Scenario      `json:"scenarios"`
	Setup      []string        `json:"setup,omitempty"` // what init did (modules loaded...)
	DurationMS int64           `json:"duration_ms"`
}

// Scenario is the outcome of one scenario.
type Scenario struct {
	Name       string   `json:"name"`
	Status     string   `json:"status"`
	Reason     string   `json:"reason,omitempty"` // why it failed or was skipped, or the notable outcome
	Log        []string `json:"log,omitempty"`    // what it saw: drain reports, timings, dmesg excerpts
	DurationMS int64    `json:"duration_ms"`
}

// Markers frame the JSON result on the guest's result port so the host can
// find it among anything else written there.
const (
	BeginMarker = "=====SOCKREAP-RESULT-BEGIN====="
	EndMarker   = "=====SOCKREAP-RESULT-END====="
)
