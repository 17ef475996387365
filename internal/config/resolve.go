package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/reap"
)

// Overrides are the settings a command line gave; a zero field was not
// given and leaves the setting to the environment, the file or the default.
type Overrides struct {
	Path       string        // --config
	StateDir   string        // --state-dir
	LogFile    string        // --log
	Budget     time.Duration // --timeout of a stage or gc
	Strict     *bool         // --strict, --strict=false
	Protocols  []string      // drain --protocols
	Orphans    string        // drain --orphans
	MetricsDir string        // --metrics-dir
	MetricsOff bool          // --metrics-dir "" given: no metrics, whatever the file says
}

// Resolve is every command's one settings resolution: a flag, then the
// environment ($SOCKREAP_CONFIG, $SOCKREAP_STATE_DIR, $SOCKREAP_LOG,
// $SOCKREAP_METRICS_DIR), then
// the configuration file, then the default. It always returns a usable
// configuration; err reports a file that could not be used (the defaults
// then stand in for it), for the caller to log or fail on.
func Resolve(o Overrides, getenv func(string) string) (*Config, error) {
	path, required := o.Path, o.Path != ""
	if !required {
		if v := strings.TrimSpace(getenv(EnvConfig)); v != "" {
			path, required = v, true
		} else {
			path = DefaultPath
		}
	}
	c, err := Load(path, required)
	if err != nil {
		err = fmt.Errorf("%w (using the defaults)", err)
	}
	c.ApplyEnv(getenv)
	if o.StateDir != "" {
		c.StateDir = o.StateDir
	}
	if o.LogFile != "" {
		c.LogFile = o.LogFile
	}
	if o.Budget > 0 {
		c.SetBudget(o.Budget)
	}
	if o.Strict != nil {
		c.Strict = *o.Strict
	}
	if o.Protocols != nil {
		c.Protocols = o.Protocols
	}
	if o.Orphans != "" {
		c.Orphans = o.Orphans
	}
	if o.MetricsDir != "" {
		c.MetricsDir = o.MetricsDir
	}
	if o.MetricsOff {
		c.MetricsDir = ""
	}
	return c, err
}

// CheckDrain validates drain settings given on a command line, with the
// same rules as the file.
func CheckDrain(protocols []string, orphans string) error {
	for _, p := range protocols {
		if p != "tcp" && p != "udp" {
			return fmt.Errorf("unknown protocol %q (tcp, udp)", p)
		}
	}
	if protocols != nil && len(protocols) == 0 {
		return fmt.Errorf("no protocol given (tcp, udp)")
	}
	switch reap.OrphanPolicy(orphans) {
	case "", reap.OrphansAuto, reap.OrphansDestroy, reap.OrphansSpare:
	default:
		return fmt.Errorf("orphan policy %q is not one of auto, destroy, spare", orphans)
	}
	return nil
}
