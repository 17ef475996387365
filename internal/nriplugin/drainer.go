package nriplugin

import (
	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/lifecycle"
)

// newDrainer returns the lifecycle core configured by cfg: the same
// decisions as the OCI hook's poststop. It costs little for the common
// pod, one that stops with no socket left: the core then neither scans the
// host's processes nor probes the kernel.
func newDrainer(cfg *config.Config) Drainer {
	return lifecycle.New(cfg.StateDir, cfg.DrainOptions(0))
}
