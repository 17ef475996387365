// Package endpoint serves sockreap's metrics on /metrics for a long-running
// front end (the NRI plugin), with Prometheus's official client library:
// the same names, labels and help as the hooks' textfile (package
// metrics), fed through the same metrics.Sink interface.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/reap"
)

// DefaultAddr is where the endpoint listens unless told otherwise: the
// loopback only, so nothing is exposed beyond the node by default.
const DefaultAddr = "127.0.0.1:9863"

// Sink keeps sockreap's collectors in its own registry and updates them
// from events; it is safe for concurrent use.
type Sink struct {
	Registry      *prometheus.Registry
	drains        *prometheus.CounterVec
	sockets       *prometheus.CounterVec
	drainDuration *prometheus.HistogramVec
	gcReleases    prometheus.Counter
	pins          prometheus.Gauge
	pinsStale     prometheus.Gauge
	dying         *prometheus.GaugeVec
	kernel        *prometheus.GaugeVec
}

var _ metrics.Sink = (*Sink)(nil)

// NewSink registers the collectors in a new registry, with the Go and
// process collectors beside them. frontend's drain outcomes start at 0.
func NewSink(frontend string) *Sink {
	h := metrics.Help
	s := &Sink{
		Registry:      prometheus.NewRegistry(),
		drains:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.NameDrains, Help: h[metrics.NameDrains]}, []string{"frontend", "outcome"}),
		sockets:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.NameSockets, Help: h[metrics.NameSockets]}, []string{"action", "protocol", "state", "owner"}),
		drainDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metrics.NameDrainDuration, Help: h[metrics.NameDrainDuration], Buckets: metrics.Buckets}, []string{"frontend"}),
		gcReleases:    prometheus.NewCounter(prometheus.CounterOpts{Name: metrics.NameGCReleases, Help: h[metrics.NameGCReleases]}),
		pins:          prometheus.NewGauge(prometheus.GaugeOpts{Name: metrics.NamePins, Help: h[metrics.NamePins]}),
		pinsStale:     prometheus.NewGauge(prometheus.GaugeOpts{Name: metrics.NamePinsStale, Help: h[metrics.NamePinsStale]}),
		dying:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metrics.NameDyingNetns, Help: h[metrics.NameDyingNetns]}, []string{"bound"}),
		kernel: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metrics.NameKernelInfo, Help: h[metrics.NameKernelInfo]},
			[]string{"kernel", "destroy", "tcp", "listen", "time_wait", "udp", "orphans_freed"}),
	}
	s.Registry.MustRegister(s.drains, s.sockets, s.drainDuration, s.gcReleases, s.pins, s.pinsStale, s.dying, s.kernel,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range metrics.Outcomes {
		if o != metrics.OutcomeKilled {
			s.drains.WithLabelValues(frontend, o)
		}
	}
	return s
}

// Record counts one event.
func (s *Sink) Record(e metrics.DrainEvent) error {
	if e.IsDrain() {
		s.drains.WithLabelValues(e.Frontend, e.Outcome).Inc()
	}
	if e.Frontend == metrics.FrontendGC && e.Released {
		s.gcReleases.Inc()
	}
	// The socket counts and the duration: the textfile's own rules, by
	// way of a recorder of this one event.
	if rep := e.Report; rep != nil && !rep.DryRun {
		r := metrics.NewRecorder()
		r.Record(e)
		for k, n := range r.Sockets {
			s.sockets.WithLabelValues(split4(k)...).Add(float64(n))
		}
		d := e.Duration
		if d == 0 {
			d = time.Duration(rep.DurationUS) * time.Microsecond
		}
		s.drainDuration.WithLabelValues(e.Frontend).Observe(d.Seconds())
	}
	return nil
}

func split4(k string) []string {
	out := make([]string, 0, 4)
	start := 0
	for i := 0; i < len(k); i++ {
		if k[i] == '|' {
			out = append(out, k[start:i])
			start = i + 1
		}
	}
	return append(out, k[start:])
}

// SetGauges sets the gauges g names.
func (s *Sink) SetGauges(g metrics.Gauges) error {
	if g.Pins != nil {
		s.pins.Set(float64(*g.Pins))
	}
	if g.PinsStale != nil {
		s.pinsStale.Set(float64(*g.PinsStale))
	}
	if g.DyingNetns != nil {
		upper := *g.DyingNetns
		if g.DyingNetnsUpper != nil {
			upper = *g.DyingNetnsUpper
		}
		s.dying.WithLabelValues("lower").Set(float64(*g.DyingNetns))
		s.dying.WithLabelValues("upper").Set(float64(upper))
	}
	if k := g.Kernel; k != nil {
		s.kernel.Reset()
		s.kernel.WithLabelValues(kernelLabels(k)...).Set(1)
	}
	return nil
}

func kernelLabels(k *reap.Capabilities) []string {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	return []string{k.Kernel, yes(k.Destroy), yes(k.TCP), yes(k.Listen), yes(k.TimeWait), yes(k.UDP), yes(k.OrphanSafe)}
}

// Handler serves the sink's registry in every format Prometheus asks for.
func (s *Sink) Handler() http.Handler {
	return promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry})
}

// Listen serves /metrics on addr until ctx ends. An address already in use
// is an error naming it.
func Listen(ctx context.Context, addr string, s *Sink) error {
	if addr == "" {
		addr = DefaultAddr
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics endpoint: listen on %s: %w", addr, err)
	}
	return Serve(ctx, l, s)
}

// Serve serves /metrics on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, s *Sink) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics endpoint on %s: %w", l.Addr(), err)
	}
	return nil
}
