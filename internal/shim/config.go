package shim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pelletier/go-toml/v2"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/safefs"
)

// DefaultConfigPath is the shim's optional configuration file.
const DefaultConfigPath = "/etc/sockreap/shim.toml"

// Config says which runtime the shim runs and which hook it injects.
// Precedence: --sockreap-runtime / --sockreap-config flags, then the
// environment (SOCKREAP_RUNTIME, SOCKREAP_HOOK, SOCKREAP_SHIM_CONFIG), then
// the file, then the defaults.
type Config struct {
	// Runtime is the real runtime: a name looked up in PATH (runc, crun)
	// or an absolute path. Default runc.
	Runtime string `toml:"runtime"`
	// Hook is the absolute path of sockreap-hook. Default: next to the
	// shim, else found in PATH.
	Hook string `toml:"hook"`
	// HookArgs are extra flags for every hook run, after the stage
	// (for example ["--state-dir", "/run/sockreap"]).
	HookArgs []string `toml:"hook_args"`
	// HookTimeout is the OCI timeout of the injected hooks in seconds.
	HookTimeout int `toml:"hook_timeout"`
}

// DefaultHookTimeout leaves the hook (2 s budget by default) ample room.
const DefaultHookTimeout = oci.DefaultHookTimeout

// LoadConfig reads the config file (a missing file is fine: defaults) and
// applies the environment and the flags of inv.
func LoadConfig(inv *Invocation, getenv func(string) string) (*Config, error) {
	path := DefaultConfigPath
	explicit := false
	if p := getenv("SOCKREAP_SHIM_CONFIG"); p != "" {
		path, explicit = p, true
	}
	if inv.Config != "" {
		path, explicit = inv.Config, true
	}
	c := &Config{}
	data, err := safefs.ReadConfig(path, maxConfigSize)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return nil, fmt.Errorf("read shim config %s: %w", path, err)
	default:
		dec := toml.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("shim config %s: %w (keys: runtime, hook, hook_args, hook_timeout)", path, err)
		}
	}
	if v := getenv("SOCKREAP_RUNTIME"); v != "" {
		c.Runtime = v
	}
	if v := getenv("SOCKREAP_HOOK"); v != "" {
		c.Hook = v
	}
	if inv.Runtime != "" {
		c.Runtime = inv.Runtime
	}
	if c.Runtime == "" {
		c.Runtime = "runc"
	}
	if c.HookTimeout == 0 {
		c.HookTimeout = DefaultHookTimeout
	}
	if c.HookTimeout < 0 {
		return nil, fmt.Errorf("shim config %s: hook_timeout %d is negative", path, c.HookTimeout)
	}
	return c, nil
}

// maxConfigSize bounds the shim's configuration file (a few lines).
const maxConfigSize = 1 << 20
