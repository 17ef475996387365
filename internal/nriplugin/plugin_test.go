package nriplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sockreap/sockreap/internal/reap"
)

// fakeDrainer records the paths it is asked to drain and answers with fn.
type fakeDrainer struct {
	mu    sync.Mutex
	paths []string
	fn    func(ctx context.Context, path string) Outcome
}

func (f *fakeDrainer) DrainPath(ctx context.Context, path string) Outcome {
	f.mu.Lock()
	f.paths = append(f.paths, path)
	f.mu.Unlock()
	return f.fn(ctx, path)
}

func (f *fakeDrainer) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.paths...)
}

func pod(netnsPath string) *api.PodSandbox {
	p := &api.PodSandbox{Id: "sb1", Name: "web-0", Namespace: "shop", Uid: "u-1", Linux: &api.LinuxPodSandbox{}}
	p.Linux.Namespaces = []*api.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}}
	if netnsPath != "" {
		p.Linux.Namespaces = append(p.Linux.Namespaces, &api.LinuxNamespace{Type: "network", Path: netnsPath})
	}
	return p
}

// logBuf is the plugin's log in a test: written by the plugin's
// goroutines, read by the test.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *logBuf) Reset()                      { l.mu.Lock(); defer l.mu.Unlock(); l.b.Reset() }

// logLines parses the buffer's JSON lines.
func logLines(t *testing.T, buf *logBuf) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func newTestPlugin(d Drainer, budget time.Duration) (*Plugin, *logBuf) {
	buf := &logBuf{}
	return New(d, slog.New(slog.NewJSONHandler(buf, nil)), budget), buf
}

func TestNetnsPath(t *testing.T) {
	if got := NetnsPath(pod("/var/run/netns/cni-1")); got != "/var/run/netns/cni-1" {
		t.Errorf("NetnsPath = %q", got)
	}
	if got := NetnsPath(pod("")); got != "" {
		t.Errorf("NetnsPath of a host-network pod = %q, want empty", got)
	}
	if got := NetnsPath(&api.PodSandbox{}); got != "" {
		t.Errorf("NetnsPath of a pod without Linux = %q", got)
	}
}

func TestStopDrainsThePodNamespaceAndLogsOneLine(t *testing.T) {
	d := &fakeDrainer{fn: func(ctx context.Context, path string) Outcome {
		return Outcome{Action: Drained, Netns: "net:[4026532000]", Report: &reap.Report{Found: 3, Destroyed: 3}}
	}}
	p, buf := newTestPlugin(d, 0)
	var seen []Result
	p.SetObserver(func(r Result) { seen = append(seen, r) })
	if err := p.StopPodSandbox(context.Background(), pod("/var/run/netns/cni-1")); err != nil {
		t.Fatalf("StopPodSandbox = %v, want nil", err)
	}
	if c := d.calls(); len(c) != 1 || c[0] != "/var/run/netns/cni-1" {
		t.Fatalf("drained %v, want the pod's namespace path once", c)
	}
	lines := logLines(t, buf)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %s", len(lines), buf)
	}
	l := lines[0]
	for k, want := range map[string]any{"level": "INFO", "pod": "web-0", "pod_namespace": "shop", "pod_uid": "u-1", "action": "drained", "destroyed": 3.0, "netns": "net:[4026532000]"} {
		if l[k] != want {
			t.Errorf("log %s = %v, want %v (line %v)", k, l[k], want, l)
		}
	}
	if _, ok := l["duration_ms"]; !ok {
		t.Errorf("log line has no duration_ms: %v", l)
	}
	if len(seen) != 1 || seen[0].Action != Drained {
		t.Errorf("observed %v", seen)
	}
}

func TestHostNetworkPodIsQuiet(t *testing.T) {
	d := &fakeDrainer{fn: func(context.Context, string) Outcome { t.Error("drainer called"); return Outcome{} }}
	p, buf := newTestPlugin(d, 0)
	if err := p.StopPodSandbox(context.Background(), pod("")); err != nil {
		t.Fatal(err)
	}
	lines := logLines(t, buf)
	if len(lines) != 1 || lines[0]["level"] != "INFO" || lines[0]["action"] != string(NothingToDrain) {
		t.Fatalf("want one INFO nothing-to-drain line, got %s", buf)
	}
}

func TestOptOutAnnotation(t *testing.T) {
	d := &fakeDrainer{fn: func(context.Context, string) Outcome { t.Error("drainer called"); return Outcome{} }}
	p, buf := newTestPlugin(d, 0)
	pd := pod("/var/run/netns/cni-1")
	pd.Annotations = map[string]string{"io.sockreap.drain": "false"}
	_ = p.StopPodSandbox(context.Background(), pd)
	if l := logLines(t, buf); len(l) != 1 || l[0]["action"] != string(OptedOut) {
		t.Fatalf("want opted-out, got %s", buf)
	}
}

func TestHangingDrainAnswersWithinBudget(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	d := &fakeDrainer{fn: func(ctx context.Context, path string) Outcome {
		<-release // ignores its context, as a broken drain would
		return Outcome{Action: Drained}
	}}
	p, buf := newTestPlugin(d, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- p.StopPodSandbox(context.Background(), pod("/var/run/netns/cni-1")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("StopPodSandbox = %v, want nil (fail open)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("StopPodSandbox did not answer while the drain hung")
	}
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["action"] != string(BudgetExceeded) || l[0]["level"] != "ERROR" {
		t.Fatalf("want one ERROR budget-exceeded line, got %s", buf)
	}
}

func TestPanickingDrainFailsOpen(t *testing.T) {
	d := &fakeDrainer{fn: func(context.Context, string) Outcome { panic("boom") }}
	p, buf := newTestPlugin(d, 0)
	if err := p.StopPodSandbox(context.Background(), pod("/var/run/netns/cni-1")); err != nil {
		t.Fatalf("StopPodSandbox = %v, want nil", err)
	}
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["action"] != string(Failed) || !strings.Contains(l[0]["error"].(string), "boom") {
		t.Fatalf("want a failed line naming the panic, got %s", buf)
	}
}

func TestFailedDrainFailsOpen(t *testing.T) {
	d := &fakeDrainer{fn: func(context.Context, string) Outcome {
		return Outcome{Action: Refused, Err: context.DeadlineExceeded}
	}}
	p, _ := newTestPlugin(d, 0)
	if err := p.StopPodSandbox(context.Background(), pod("/var/run/netns/cni-1")); err != nil {
		t.Fatalf("StopPodSandbox = %v, want nil", err)
	}
}

func TestBudgetEndsBeforeTheRuntimesDeadline(t *testing.T) {
	var got time.Duration
	d := &fakeDrainer{fn: func(ctx context.Context, path string) Outcome {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Error("drain context has no deadline")
		}
		got = time.Until(dl)
		return Outcome{Action: Drained}
	}}
	p, _ := newTestPlugin(d, 0) // DefaultBudget, longer than the deadline below
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	_ = p.StopPodSandbox(ctx, pod("/var/run/netns/cni-1"))
	if got <= 0 || got > 600*time.Millisecond-replyMargin {
		t.Errorf("drain got %v, want at most %v (the runtime's deadline less the reply margin)", got, 600*time.Millisecond-replyMargin)
	}
	// No time left at all: not drained, still nil.
	ctx2, cancel2 := context.WithTimeout(context.Background(), replyMargin/2)
	defer cancel2()
	n := len(d.calls())
	if err := p.StopPodSandbox(ctx2, pod("/var/run/netns/cni-1")); err != nil || len(d.calls()) != n {
		t.Errorf("with no time left: err %v, drained %d more times", err, len(d.calls())-n)
	}
}

func TestUnsafePodFieldsStayOnOneLogLine(t *testing.T) {
	d := &fakeDrainer{fn: func(context.Context, string) Outcome { return Outcome{Action: Drained} }}
	p, buf := newTestPlugin(d, 0)
	pd := pod("/var/run/netns/cni-1")
	pd.Name = "evil\"\n{\"action\":\"forged\"}"
	_ = p.StopPodSandbox(context.Background(), pd)
	l := logLines(t, buf)
	if len(l) != 1 || l[0]["pod"] != pd.Name || l[0]["action"] != "drained" {
		t.Fatalf("want one line carrying the name verbatim, got %s", buf)
	}
}

func TestParseDropIn(t *testing.T) {
	s := Settings{Budget: "1s", LogFile: "/a"}
	if err := ParseDropIn("budget = \"800ms\"\nlog_file = \"-\"\n", &s); err != nil {
		t.Fatal(err)
	}
	if b, err := s.budget(); err != nil || b != 800*time.Millisecond || s.LogFile != "-" {
		t.Errorf("got budget %v (%v), log %q", b, err, s.LogFile)
	}
	if err := ParseDropIn("budgett = \"1s\"", &s); err == nil || !strings.Contains(err.Error(), "budget, metrics_addr") {
		t.Errorf("unknown key: err %v, want one naming the keys", err)
	}
	s.Budget = "soon"
	if _, err := s.budget(); err == nil || !strings.Contains(err.Error(), "soon") {
		t.Errorf("bad budget: err %v", err)
	}
}
