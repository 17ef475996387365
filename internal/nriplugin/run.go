package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Defaults of the plugin's registration.
const (
	DefaultName = "sockreap"
	// DefaultIdx orders sockreap after plugins that act on pods: at
	// StopPodSandbox nothing else needs the namespace.
	DefaultIdx = "90"
)

// Backoff bounds for reconnecting to the runtime's NRI socket.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Launched tells whether the runtime started this process as a
// pre-registered plugin (NRI hands it a connected socket), rather than it
// running as a daemon that connects to NRI's socket.
func Launched() bool { return os.Getenv(api.PluginSocketEnvVar) != "" }

// Conn says how to reach the runtime.
type Conn struct {
	Socket string // NRI socket path; "" means NRI's default
	Name   string // plugin name; "" means DefaultName (or the runtime's, when launched)
	Idx    string // plugin index; "" means DefaultIdx (or the runtime's, when launched)
	// Configure, when set, receives the plugin's configuration text from
	// the runtime (NRI's drop-in conf.d file for a pre-registered plugin).
	Configure func(config string) error
	// Connected, when set, is called at every successful registration.
	Connected func()
}

// Serve connects the plugin to the runtime's NRI and serves it until ctx is
// done. As a daemon it reconnects with backoff whenever the connection
// drops (the runtime restarted); when launched by the runtime it returns
// once the connection is gone, since the runtime starts a new plugin.
func (p *Plugin) Serve(ctx context.Context, c Conn) error {
	launched := Launched()
	backoff := minBackoff
	warned := false
	for {
		started := time.Now()
		registered, err := p.serveOnce(ctx, c, launched)
		if ctx.Err() != nil {
			return nil
		}
		if launched {
			if registered {
				p.logger().Info("the runtime closed the connection; exiting (the runtime starts the plugin again)")
				return nil
			}
			return err
		}
		if registered {
			warned = false
		}
		if time.Since(started) > maxBackoff {
			backoff = minBackoff
		}
		// One warning per outage; the retries in between are debug.
		level := slog.LevelDebug
		if !warned {
			level, warned = slog.LevelWarn, true
		}
		p.logger().Log(ctx, level, "not connected to NRI; retrying", "socket", c.socketPath(), "retry_in_ms", backoff.Milliseconds(), "error", errString(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (c Conn) socketPath() string {
	if c.Socket == "" {
		return api.DefaultSocketPath
	}
	return c.Socket
}

// serveOnce registers and serves one connection until it closes.
func (p *Plugin) serveOnce(ctx context.Context, c Conn, launched bool) (registered bool, err error) {
	opts := []stub.Option{stub.WithOnClose(func() {}), stub.WithLogger(nriLogger{p.logger()})}
	// A launched plugin registers under the name and index the runtime
	// gave it (its file name NN-name); the stub reads them from the
	// environment.
	if !launched || os.Getenv(api.PluginNameEnvVar) == "" {
		opts = append(opts, stub.WithPluginName(orDefault(c.Name, DefaultName)))
	}
	if !launched || os.Getenv(api.PluginIdxEnvVar) == "" {
		opts = append(opts, stub.WithPluginIdx(orDefault(c.Idx, DefaultIdx)))
	}
	where := "connection from the runtime"
	if !launched {
		where = c.socketPath()
		opts = append(opts, stub.WithSocketPath(where))
	}
	s, err := stub.New(&handlers{p: p, c: c}, opts...)
	if err != nil {
		return false, fmt.Errorf("create NRI plugin: %w", err)
	}
	if err := s.Start(ctx); err != nil {
		return false, fmt.Errorf("register with NRI at %s: %w", where, err)
	}
	p.logger().Info("registered with NRI", "socket", where, "request_timeout_ms", s.RequestTimeout().Milliseconds())
	if c.Connected != nil {
		c.Connected()
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-stopped:
		}
	}()
	s.Wait()
	close(stopped)
	if launched || ctx.Err() != nil {
		p.stopWatching()
	}
	return true, errors.New("connection closed by the runtime")
}

// handlers is what the NRI stub sees: only the events sockreap acts on.
type handlers struct {
	p *Plugin
	c Conn
}

func (h *handlers) Configure(_ context.Context, config, runtime, version string) (api.EventMask, error) {
	// The configuration first: it may name the log.
	if h.c.Configure != nil {
		if err := h.c.Configure(config); err != nil {
			return 0, err
		}
	}
	h.p.logger().Info("configured by runtime", "runtime", runtime, "runtime_version", version, "drop_in", config != "")
	return api.MustParseEventMask("StopPodSandbox"), nil
}

func (h *handlers) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return h.p.StopPodSandbox(ctx, pod)
}

func (h *handlers) Synchronize(ctx context.Context, pods []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	h.p.Synchronize(ctx, pods)
	return nil, nil
}

func (p *Plugin) logger() *slog.Logger {
	if l := p.log.Load(); l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// nriLogger routes the NRI library's own messages into the plugin's log;
// its chatter about each event is debug-level.
type nriLogger struct{ l *slog.Logger }

func (n nriLogger) Debugf(_ context.Context, f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n nriLogger) Infof(_ context.Context, f string, a ...any)  { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n nriLogger) Warnf(_ context.Context, f string, a ...any)  { n.l.Warn(fmt.Sprintf(f, a...)) }
func (n nriLogger) Errorf(_ context.Context, f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
