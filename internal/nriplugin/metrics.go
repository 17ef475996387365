package nriplugin

import (
	"context"
	"fmt"
	"net"

	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/metrics/endpoint"
)

// startMetrics serves /metrics on addr until ctx is done and makes the
// plugin count every pod there. The address is taken before it returns,
// so one already in use is reported at start.
func startMetrics(ctx context.Context, addr string, p *Plugin) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics endpoint: listen on %s: %w", addr, err)
	}
	serveMetrics(ctx, l, p)
	return nil
}

// serveMetrics serves /metrics on l until ctx is done.
func serveMetrics(ctx context.Context, l net.Listener, p *Plugin) {
	sink := endpoint.NewSink(metrics.FrontendNRI)
	p.SetObserver(func(r Result) {
		_ = sink.Record(metrics.DrainEvent{
			Frontend:      metrics.FrontendNRI,
			Outcome:       string(r.Action),
			StageDuration: r.Duration,
			Report:        r.Report,
			Failed:        r.Err != nil,
		})
	})
	go func() {
		if err := endpoint.Serve(ctx, l, sink); err != nil {
			p.logger().Error("metrics endpoint stopped", "error", err.Error())
		}
	}()
	p.logger().Info("serving metrics", "address", l.Addr().String())
}
