// Package config reads sockreap's optional configuration file,
// /etc/sockreap/config.toml. Every setting has a default, so the file may be
// missing; a file that exists must be valid (unknown keys are errors, so a
// typo is not silently ignored).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/sockreap/sockreap/internal/reap"
	"github.com/sockreap/sockreap/internal/safefs"
)

// Defaults.
const (
	DefaultPath     = "/etc/sockreap/config.toml"
	DefaultStateDir = "/run/sockreap"
	DefaultLogFile  = "/var/log/sockreap/hook.log"
	// DefaultMetricsDir is node_exporter's textfile directory on Debian
	// (metrics.DefaultDir).
	DefaultMetricsDir = "/var/lib/prometheus/node-exporter"
)

// Environment variables that override the file (flags override both).
const (
	EnvConfig   = "SOCKREAP_CONFIG"
	EnvStateDir = "SOCKREAP_STATE_DIR"
	EnvLogFile  = "SOCKREAP_LOG"
	EnvMetrics  = "SOCKREAP_METRICS_DIR"
)

// Config is the configuration file's content, with defaults filled in.
type Config struct {
	// StateDir holds the pins (pins/<container id>) and the kernel probe cache.
	StateDir string `toml:"state_dir"`
	// LogFile receives one JSON line per hook stage run.
	LogFile string `toml:"log_file"`
	// Budget is the longest a stage may take, e.g. "2s" or "500ms".
	Budget string `toml:"budget"`
	// Strict makes a failing stage exit non-zero (fail closed).
	Strict bool `toml:"strict"`
	// Protocols to drain: "tcp", "udp".
	Protocols []string `toml:"protocols"`
	// Orphans is the orphan policy: "auto", "destroy" or "spare".
	Orphans string `toml:"orphans"`
	// MetricsDir is where sockreap.prom is kept for node_exporter's
	// textfile collector; "" turns metrics off, and a directory that does
	// not exist means no node_exporter here (nothing is written).
	MetricsDir string `toml:"metrics_dir"`
	// DyingNetnsExact lets gc flush the net_namespace slab's per-CPU
	// caches (a write to /sys/kernel/slab/net_namespace/shrink) before
	// counting dying namespaces, so the gauge is exact, not bounds.
	DyingNetnsExact bool `toml:"dying_netns_exact"`

	// Path is the file this came from, "" when defaults only.
	Path string `toml:"-"`
	// budget is Budget parsed.
	budget time.Duration
}

// Default returns the built-in configuration.
func Default() *Config {
	return &Config{
		StateDir:   DefaultStateDir,
		LogFile:    DefaultLogFile,
		Budget:     reap.DefaultTimeout.String(),
		Protocols:  []string{"tcp", "udp"},
		Orphans:    string(reap.OrphansAuto),
		MetricsDir: DefaultMetricsDir,
		budget:     reap.DefaultTimeout,
	}
}

// Load reads the file at path over the defaults. A missing file is fine
// unless required (the user named it explicitly).
func Load(path string, required bool) (*Config, error) {
	c := Default()
	b, err := safefs.ReadConfig(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config %s: %w", path, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return Default(), fmt.Errorf("config %s: unknown setting(s):\n%s", path, strict.String())
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return Default(), fmt.Errorf("config %s:%d:%d: %w", path, row, col, err)
		}
		return Default(), fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	if err := c.validate(); err != nil {
		return Default(), fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.StateDir == "" {
		return errors.New("state_dir is empty")
	}
	if c.LogFile == "" {
		return errors.New("log_file is empty")
	}
	d, err := time.ParseDuration(c.Budget)
	if err != nil || d <= 0 {
		return fmt.Errorf("budget %q is not a positive duration such as \"2s\" or \"500ms\"", c.Budget)
	}
	c.budget = d
	for _, p := range c.Protocols {
		if p != "tcp" && p != "udp" {
			return fmt.Errorf("protocols: unknown protocol %q (tcp, udp)", p)
		}
	}
	switch reap.OrphanPolicy(c.Orphans) {
	case reap.OrphansAuto, reap.OrphansDestroy, reap.OrphansSpare:
	default:
		return fmt.Errorf("orphans %q is not one of auto, destroy, spare", c.Orphans)
	}
	return nil
}

// BudgetDuration returns the parsed budget.
func (c *Config) BudgetDuration() time.Duration {
	if c.budget <= 0 {
		return reap.DefaultTimeout
	}
	return c.budget
}

// SetBudget sets the budget (from a flag).
func (c *Config) SetBudget(d time.Duration) {
	c.budget = d
	c.Budget = d.String()
}

// ApplyEnv overrides the file with the environment.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if v := strings.TrimSpace(getenv(EnvStateDir)); v != "" {
		c.StateDir = v
	}
	if v := strings.TrimSpace(getenv(EnvLogFile)); v != "" {
		c.LogFile = v
	}
	if v := strings.TrimSpace(getenv(EnvMetrics)); v != "" {
		c.MetricsDir = v
	}
}

// DrainOptions turns the configuration into drain options with budget b.
func (c *Config) DrainOptions(b time.Duration) reap.Options {
	tcp, udp := false, false
	for _, p := range c.Protocols {
		switch p {
		case "tcp":
			tcp = true
		case "udp":
			udp = true
		}
	}
	return reap.Options{Timeout: b, TCP: &tcp, UDP: &udp, Orphans: reap.OrphanPolicy(c.Orphans)}
}

// MaxFileSize bounds the configuration file: a real one is a few hundred
// bytes.
const MaxFileSize = 1 << 20
