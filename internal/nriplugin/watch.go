package nriplugin

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/netns"
)

// Pods that were running when the runtime restarted get no StopPodSandbox:
// containerd (2.2 included) rebuilds its NRI state at a plugin's
// synchronization from containers only, so it considers such pods already
// stopped (containerd issue 8426, fixed for containers alone). The plugin
// therefore watches the pause process of every pod the synchronization
// lists: the runtime kills it while stopping the pod, right before it
// would send StopPodSandbox and tear the network down, so its exit is when
// to drain. Where the event does come, it finds the namespace drained.

// watchers tracks the pods whose pause process is watched.
type watchers struct {
	mu   sync.Mutex
	pods map[string]*watch
	// settled are the pods a watch drained for good (or found nothing
	// to do for), by when: their StopPodSandbox, if it comes, has nothing
	// left to do, and the pod keeps one log line.
	settled map[string]time.Time
}

// settledFor is how long a settled pod is remembered: the runtime sends
// StopPodSandbox right after the pause process's exit, or never.
const settledFor = 10 * time.Minute

type watch struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once the watch (and its drain) is over
}

// Synchronize starts watching the pods the runtime lists.
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox) {
	for _, pod := range pods {
		p.watchPod(pod)
	}
}

// watchPod watches pod's pause process and drains the pod's namespace when
// it exits. Pods without a namespace of their own or without a pid, and
// pids that no longer are the pod's pause process, are left alone.
func (p *Plugin) watchPod(pod *api.PodSandbox) {
	path, pid := NetnsPath(pod), int(pod.GetPid())
	if path == "" || pid <= 0 {
		return
	}
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if p.w.pods == nil {
		p.w.pods = map[string]*watch{}
	}
	if _, ok := p.w.pods[pod.GetId()]; ok {
		return
	}
	fd, err := pidOf(pid, path)
	if err != nil {
		p.logger().Debug("pod not watched", "sandbox", pod.GetId(), "pid", pid, "error", err.Error())
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{cancel: cancel, done: make(chan struct{})}
	p.w.pods[pod.GetId()] = w
	go func() {
		defer close(w.done)
		defer unix.Close(fd)
		if !waitExit(ctx, fd) {
			return
		}
		res := p.handle(context.Background(), pod, "PauseExited")
		p.w.mu.Lock()
		defer p.w.mu.Unlock()
		if p.w.pods[pod.GetId()] == w {
			delete(p.w.pods, pod.GetId())
		}
		switch res.Action {
		case Drained, NothingToDrain, OptedOut, Refused:
			if res.Err != nil {
				return
			}
			now := time.Now()
			if p.w.settled == nil {
				p.w.settled = map[string]time.Time{}
			}
			for id, at := range p.w.settled {
				if now.Sub(at) > settledFor {
					delete(p.w.settled, id)
				}
			}
			p.w.settled[pod.GetId()] = now
		}
		// Otherwise (live processes still inside: the pause process was
		// killed first; a failure) StopPodSandbox drains again.
	}()
}

// pidOf opens a pidfd on pid, provided pid still runs in the namespace at
// path (the pid could have been reused since the runtime listed it).
func pidOf(pid int, path string) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	want, err := netns.IDOf(path)
	if err == nil {
		var have netns.ID
		// With the pidfd open, the pid cannot be reused under us.
		if have, err = netns.IDOf("/proc/" + strconv.Itoa(pid) + "/ns/net"); err == nil && have != want {
			err = errors.New("the process is not in the pod's network namespace")
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// waitExit waits until the process of pidfd fd exits (true) or ctx ends.
func waitExit(ctx context.Context, fd int) bool {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Second/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// unwatch ends the watch of pod id, waiting for a drain it started, and
// tells whether that drain settled the pod.
func (p *Plugin) unwatch(id string) (settled bool) {
	p.w.mu.Lock()
	w := p.w.pods[id]
	delete(p.w.pods, id)
	p.w.mu.Unlock()
	if w != nil {
		select {
		case <-w.done: // exited and drained (or gave up): nothing to cancel
		default:
			// Still waiting, or draining right now: a drain in
			// progress finishes within its budget; a wait ends here.
			w.cancel()
		}
		<-w.done
	}
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	_, settled = p.w.settled[id]
	delete(p.w.settled, id)
	return settled
}

// stopWatching ends every watch.
func (p *Plugin) stopWatching() {
	p.w.mu.Lock()
	ids := make([]string, 0, len(p.w.pods))
	for id := range p.w.pods {
		ids = append(ids, id)
	}
	p.w.mu.Unlock()
	for _, id := range ids {
		_ = p.unwatch(id)
	}
}
