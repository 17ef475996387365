package nriplugin

import "github.com/sockreap/sockreap/internal/config"

// newDrainer returns the drain core configured by cfg.
func newDrainer(cfg *config.Config) Drainer {
	return ReapDrainer{StateDir: cfg.StateDir, Options: cfg.DrainOptions(0)}
}
