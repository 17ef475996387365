package suite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/reap"
)

// Config says where the suite finds its tools.
type Config struct {
	Hook  string   // path of sockreap-hook
	Only  []string // run only these scenarios (all when empty)
	InVM  bool     // running as init of a throwaway VM (may leave the kernel dirty)
	Setup []string // what the caller did before (reported)
}

// env is what every scenario gets.
type env struct {
	cfg  Config
	caps *reap.Capabilities // from doctor; nil when doctor failed
}

type scenario struct {
	name string
	fn   func(t *T, e *env)
}

// scenarios is the suite, in order. The hang reproduction runs last: on a
// kernel that shows the hang, it leaves a namespace stuck in cleanup.
var scenarios = []scenario{
	{"udp", testUDP},
	{"listener", testListener},
	{"time-wait", testTimeWait},
	{"ipv6", testIPv6},
	{"orphan", testOrphan},
	{"kernel-rds", testKernelRDS},
	{"hang-repro", testHang},
}

// Names lists the scenarios in order.
func Names() []string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return n
}

// Run runs the suite on the running kernel.
func Run(cfg Config) Result {
	start := time.Now()
	r := Result{Setup: cfg.Setup}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/version"); err == nil {
		r.Version = strings.TrimSpace(string(b))
	}
	e := &env{cfg: cfg}
	// The hooks' state (the probe cache) goes to a directory of the run's
	// own, not to the host's /run/sockreap.
	if dir, err := os.MkdirTemp("", "sockreap-kernels-state-"); err == nil {
		defer os.RemoveAll(dir)
		defer os.Unsetenv("SOCKREAP_STATE_DIR")
		os.Setenv("SOCKREAP_STATE_DIR", dir)
		// Metrics off (no such directory): the host's node_exporter
		// directory stays untouched.
		defer os.Unsetenv("SOCKREAP_METRICS_DIR")
		os.Setenv("SOCKREAP_METRICS_DIR", filepath.Join(dir, "no-metrics"))
	}
	out, err := exec.Command(cfg.Hook, "doctor", "--json").Output()
	if err != nil {
		r.DoctorErr = fmt.Sprintf("sockreap-hook doctor --json: %v %s", err, stderrOf(err))
	} else {
		r.Doctor = json.RawMessage(bytes.TrimSpace(out))
		var caps reap.Capabilities
		if err := json.Unmarshal(out, &caps); err != nil {
			r.DoctorErr = fmt.Sprintf("doctor output is not the capabilities JSON: %v", err)
		} else {
			e.caps = &caps
		}
	}
	for _, s := range scenarios {
		if len(cfg.Only) > 0 && !contains(cfg.Only, s.name) {
			continue
		}
		r.Scenarios = append(r.Scenarios, run(s.name, func(t *T) { s.fn(t, e) }))
	}
	r.DurationMS = time.Since(start).Milliseconds()
	return r
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
