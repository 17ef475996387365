package nriplugin

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/reap"
)

func TestMetricsCountPods(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &fakeDrainer{fn: func(context.Context, string) Outcome {
		return Outcome{Action: Drained, Report: &reap.Report{Found: 2, Destroyed: 2}}
	}}
	p, _ := newTestPlugin(d, 0)
	serveMetrics(ctx, l, p)
	_ = p.StopPodSandbox(context.Background(), pod("/var/run/netns/cni-1"))
	_ = p.StopPodSandbox(context.Background(), pod(""))
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`sockreap_drains_total{frontend="nri",outcome="drained"} 1`,
		`sockreap_drains_total{frontend="nri",outcome="nothing-to-drain"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, b)
		}
	}
}
