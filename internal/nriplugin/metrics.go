package nriplugin

import (
	"context"
	"errors"
)

// startMetrics serves /metrics on addr ("" off, "on" the default address).
func startMetrics(ctx context.Context, addr string, p *Plugin) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	return nil, errors.New("metrics endpoint not available in this build")
}
