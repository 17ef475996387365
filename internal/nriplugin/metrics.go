package nriplugin

import (
	"context"
	"errors"
)

// startMetrics serves /metrics on addr until ctx is done.
func startMetrics(ctx context.Context, addr string, p *Plugin) error {
	return errors.New("metrics endpoint not available in this build")
}
