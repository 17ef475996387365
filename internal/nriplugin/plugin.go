// Package nriplugin is sockreap's NRI plugin: at StopPodSandbox, which
// containerd (1.7+, 2.x) and CRI-O (1.26+) send after every process of the
// pod is gone and before CNI teardown unmounts the pod's network namespace,
// it drains that namespace through the same core as the OCI hook. No
// runtime handler and no RuntimeClass: every pod on the node is covered.
//
// The plugin fails open: whatever happens, StopPodSandbox answers nil, so
// a drain can never fail or stall a pod's stop beyond its budget.
package nriplugin

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sockreap/sockreap/internal/oci"
)

// DefaultBudget is the longest a StopPodSandbox may take, below NRI's
// default 2 s request timeout so that the answer always arrives in time.
const DefaultBudget = 1500 * time.Millisecond

// replyMargin is kept from the runtime's request deadline for answering.
const replyMargin = 100 * time.Millisecond

// Drainer drains the network namespace mounted at path under sockreap's
// safety rules (the host's and the plugin's own namespace refused, a
// namespace with live processes skipped).
type Drainer interface {
	DrainPath(ctx context.Context, path string) Outcome
}

// Plugin handles NRI pod events. Its exported fields are read-only once it
// serves; the budget and the log may change when the runtime configures it.
type Plugin struct {
	observe atomic.Pointer[func(Result)]
	drainer atomic.Pointer[Drainer]
	budget  atomic.Int64 // nanoseconds; 0 means DefaultBudget
	log     atomic.Pointer[slog.Logger]
	w       watchers
}

// New returns a plugin draining with d and logging to log.
func New(d Drainer, log *slog.Logger, budget time.Duration) *Plugin {
	p := &Plugin{}
	p.SetDrainer(d)
	p.SetLog(log)
	p.SetBudget(budget)
	return p
}

// SetObserver makes the plugin call fn with every pod's result (metrics).
func (p *Plugin) SetObserver(fn func(Result)) { p.observe.Store(&fn) }

// SetDrainer makes the plugin drain with d.
func (p *Plugin) SetDrainer(d Drainer) { p.drainer.Store(&d) }

// SetBudget bounds a StopPodSandbox; 0 means DefaultBudget. The runtime's
// request deadline shortens it.
func (p *Plugin) SetBudget(d time.Duration) { p.budget.Store(int64(d)) }

// SetLog makes the plugin log to l (nil: nowhere).
func (p *Plugin) SetLog(l *slog.Logger) { p.log.Store(l) }

// Result is what the plugin did for one pod.
type Result struct {
	Outcome
	Event    string // StopPodSandbox, or PauseExited for a pod watched since a synchronization
	Path     string
	Duration time.Duration
}

// NetnsPath returns the path of the pod's network namespace from its NRI
// description, "" when the pod has none of its own (hostNetwork).
func NetnsPath(pod *api.PodSandbox) string {
	for _, ns := range pod.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return ns.GetPath()
		}
	}
	return ""
}

// StopPodSandbox drains the pod's network namespace. It always returns nil:
// the pod's stop must go on whatever the drain does.
func (p *Plugin) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	// A drain started by the pause process's exit finishes first; when it
	// settled the pod, its line is the pod's line.
	if p.unwatch(pod.GetId()) {
		return nil
	}
	p.handle(ctx, pod, "StopPodSandbox")
	return nil
}

// handle drains pod's namespace for event and logs and reports the result.
func (p *Plugin) handle(ctx context.Context, pod *api.PodSandbox, event string) Result {
	start := time.Now()
	budget := p.effectiveBudget(ctx, start)
	res := p.stop(ctx, pod, budget)
	res.Event = event
	res.Duration = time.Since(start)
	p.logResult(pod, res, budget)
	if fn := p.observe.Load(); fn != nil {
		(*fn)(res)
	}
	return res
}

// budget is the configured budget, shortened to end replyMargin before the
// runtime's deadline.
func (p *Plugin) effectiveBudget(ctx context.Context, now time.Time) time.Duration {
	b := time.Duration(p.budget.Load())
	if b <= 0 {
		b = DefaultBudget
	}
	if dl, ok := ctx.Deadline(); ok {
		b = min(b, dl.Sub(now)-replyMargin)
	}
	return max(b, 0)
}

func (p *Plugin) stop(ctx context.Context, pod *api.PodSandbox, budget time.Duration) Result {
	path := NetnsPath(pod)
	res := Result{Path: path}
	switch {
	case oci.DrainDisabled(pod.GetAnnotations()):
		res.Action, res.Reason = OptedOut, "annotation "+oci.AnnotationDrain
		return res
	case path == "":
		// hostNetwork: the host's namespace, never drained. Not a warning:
		// such pods are common and expected.
		res.Action, res.Reason = NothingToDrain, "the pod has no network namespace of its own (host network)"
		return res
	case budget <= 0:
		res.Action, res.Err = BudgetExceeded, fmt.Errorf("no time left before the runtime's deadline to drain %s", path)
		return res
	}
	dctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	done := make(chan Outcome, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- Outcome{Action: Failed, Err: fmt.Errorf("drain of %s panicked: %v\n%s", path, r, debug.Stack())}
			}
		}()
		done <- (*p.drainer.Load()).DrainPath(dctx, path)
	}()
	// The drain honours its context; the extra wait only guards against a
	// drain that does not, so the runtime still gets its answer in time.
	grace := time.NewTimer(budget + replyMargin/2)
	defer grace.Stop()
	select {
	case o := <-done:
		res.Outcome = o
	case <-grace.C:
		res.Action, res.Err = BudgetExceeded, fmt.Errorf("drain of %s still running after the %v budget; answered the runtime without it", path, budget)
	}
	return res
}

func (p *Plugin) logResult(pod *api.PodSandbox, res Result, budget time.Duration) {
	log := p.logger()
	attrs := []any{
		"event", res.Event,
		"pod", pod.GetName(),
		"pod_namespace", pod.GetNamespace(),
		"pod_uid", pod.GetUid(),
		"sandbox", pod.GetId(),
		"action", string(res.Action),
		"duration_ms", float64(res.Duration.Microseconds()) / 1000,
		"budget_ms", budget.Milliseconds(),
	}
	if res.Path != "" {
		attrs = append(attrs, "netns_path", res.Path)
	}
	if res.Netns != "" {
		attrs = append(attrs, "netns", res.Netns)
	}
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	if r := res.Report; r != nil {
		attrs = append(attrs, "destroyed", r.Destroyed, "report", r)
	}
	if len(res.Processes) > 0 {
		attrs = append(attrs, "processes", res.Processes)
	}
	if len(res.Warnings) > 0 {
		attrs = append(attrs, "warnings", res.Warnings)
	}
	msg := "pod " + string(res.Action)
	switch {
	case res.Err != nil:
		attrs = append(attrs, "error", res.Err.Error())
		log.Error(msg, attrs...)
	case len(res.Warnings) > 0:
		log.Warn(msg, attrs...)
	default:
		log.Info(msg, attrs...)
	}
}
