package nriplugin

import (
	"context"

	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/lifecycle"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/oci"
	"github.com/sockreap/sockreap/internal/reap"
)

// newDrainer returns the lifecycle core configured by cfg (the same
// decisions as the OCI hook's poststop), answering first for namespaces
// without sockets.
func newDrainer(cfg *config.Config) Drainer {
	return emptyFirst{lifecycle.New(cfg.StateDir, cfg.DrainOptions(0))}
}

// emptyFirst answers "nothing to drain" for a namespace that holds no
// TCP or UDP socket (its own sockstat counters, microseconds) before the
// core's check for live processes, which reads the namespace of every
// thread on the node (~10 ms on a node with 800 threads): a namespace
// without sockets has nothing to destroy, whoever is inside. Most pods stop
// with nothing left, and StopPodSandbox is on the pod's stop path.
// Everything else, refusals included, is the core's to decide.
type emptyFirst struct{ Drainer }

func (e emptyFirst) DrainPath(ctx context.Context, path string) Outcome {
	np := oci.ClassifyNetnsPath(path)
	if np.Kind != oci.NetnsNsfs {
		return e.Drainer.DrainPath(ctx, path)
	}
	ns, err := netns.Open(np.Resolved)
	if err != nil {
		return e.Drainer.DrainPath(ctx, path)
	}
	defer ns.Close()
	if _, err := netns.CheckTarget(ns.ID); err != nil {
		return e.Drainer.DrainPath(ctx, path)
	}
	if n, err := reap.SocketsInUse(ns); err != nil || n > 0 {
		return e.Drainer.DrainPath(ctx, path)
	}
	return Outcome{Action: NothingToDrain, Reason: "no sockets in the namespace", Netns: ns.ID.String()}
}
