package endpoint_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/sockreap/sockreap/internal/metrics"
	"github.com/sockreap/sockreap/internal/metrics/endpoint"
	"github.com/sockreap/sockreap/internal/promtest"
	"github.com/sockreap/sockreap/internal/reap"
)

// The endpoint serves, over real HTTP on loopback, what its sink was told,
// under the textfile's names and labels.
func TestEndpointServes(t *testing.T) {
	s := endpoint.NewSink(metrics.FrontendNRI)
	s.Record(metrics.DrainEvent{Frontend: metrics.FrontendNRI, Outcome: "drained", Report: &reap.Report{DurationUS: 800,
		FoundBy:     []reap.Group{{Protocol: "tcp", State: "FIN-WAIT-1", Owner: reap.OwnerOrphan, Count: 2}},
		DestroyedBy: []reap.Group{{Protocol: "tcp", State: "FIN-WAIT-1", Owner: reap.OwnerOrphan, Count: 2}}}})
	s.Record(metrics.DrainEvent{Frontend: metrics.FrontendNRI, Outcome: "skipped-shared"})
	s.SetGauges(metrics.Gauges{Pins: metrics.Int(4), DyingNetns: metrics.Int(1), Kernel: &reap.Capabilities{Kernel: "6.18", Destroy: true}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- endpoint.Serve(ctx, l, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f, err := promtest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.NameDrains, map[string]string{"frontend": "nri", "outcome": "drained"}, 1},
		{metrics.NameDrains, map[string]string{"frontend": "nri", "outcome": "skipped-shared"}, 1},
		{metrics.NameDrains, map[string]string{"frontend": "nri", "outcome": "failed"}, 0},
		{metrics.NameSockets, map[string]string{"action": "destroyed", "protocol": "tcp", "state": "closing", "owner": "orphan"}, 2},
		{metrics.NameDrainDuration, map[string]string{"frontend": "nri"}, 1},
		{metrics.NamePins, map[string]string{}, 4},
		{metrics.NameDyingNetns, map[string]string{"bound": "upper"}, 1},
	} {
		if got, ok := f.Value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v\n%s", c.name, c.labels, got, ok, c.want, f.Series(c.name))
		}
	}
	if _, ok := f["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if err := endpoint.Listen(context.Background(), l.Addr().String(), s); err == nil {
		t.Error("Listen on an address in use succeeded")
	}
}
