package cli

import "os"

// DefaultStateDir is where pins and the probe cache live: $SOCKREAP_STATE_DIR
// or /run/sockreap.
func DefaultStateDir() string {
	if d := os.Getenv("SOCKREAP_STATE_DIR"); d != "" {
		return d
	}
	return "/run/sockreap"
}
