package nriplugin

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/sockreap/sockreap/internal/config"
	"github.com/sockreap/sockreap/internal/logging"
	"github.com/sockreap/sockreap/internal/metrics/endpoint"
)

// DefaultLogFile receives the plugin's JSON lines; "-" means stderr.
const DefaultLogFile = "/var/log/sockreap/nri.log"

// DefaultMetricsAddr is where metrics_addr "on" serves /metrics: the
// loopback only.
const DefaultMetricsAddr = endpoint.DefaultAddr

// Settings are the plugin's flags. A pre-registered plugin, which the
// runtime starts without arguments, takes the same keys from its NRI
// drop-in configuration (/etc/nri/conf.d/NN-sockreap.conf, TOML), which
// the runtime hands over once connected.
type Settings struct {
	Socket      string `toml:"socket"`
	Name        string `toml:"name"`
	Idx         string `toml:"idx"`
	Budget      string `toml:"budget"`
	MetricsAddr string `toml:"metrics_addr"`
	LogFile     string `toml:"log_file"`
	StateDir    string `toml:"state_dir"`
	Config      string `toml:"config"`
}

// ParseDropIn reads NRI drop-in configuration text over s. Unknown keys are
// errors, so a typo is not silently ignored.
func ParseDropIn(text string, s *Settings) error {
	dec := toml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return fmt.Errorf("NRI configuration for sockreap: %w (keys: budget, metrics_addr, log_file, state_dir, config)", err)
	}
	return nil
}

func (s *Settings) budget() (time.Duration, error) {
	if s.Budget == "" {
		return DefaultBudget, nil
	}
	d, err := time.ParseDuration(s.Budget)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("budget %q is not a positive duration such as \"1500ms\"", s.Budget)
	}
	return d, nil
}

// drainConfig loads sockreap's configuration file (drain protocols, orphan
// policy, state directory) under the settings.
func (s *Settings) drainConfig() (*config.Config, error) {
	path, required := s.Config, s.Config != ""
	if path == "" {
		path = config.DefaultPath
	}
	cfg, err := config.Load(path, required)
	if err != nil {
		return nil, err
	}
	cfg.ApplyEnv(os.Getenv)
	if s.StateDir != "" {
		cfg.StateDir = s.StateDir
	}
	return cfg, nil
}

// openLog opens the JSON log named by path ("-": stderr).
func openLog(path string, stderr io.Writer) (*slog.Logger, func() error, error) {
	if path == "-" {
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() error { return nil }, nil
	}
	return logging.Open(path, slog.LevelInfo, stderr)
}

// agent applies settings to a running plugin: at start from the flags, and
// again from the runtime's drop-in configuration.
type agent struct {
	p       *Plugin
	stderr  io.Writer
	mu      sync.Mutex
	applied Settings
	closeFn func() error
	metrics bool
	// deferLog: open no log yet (a launched plugin before its drop-in).
	deferLog bool
}

// apply makes s the plugin's settings; what cannot be applied is kept as
// it was and returned as an error.
func (a *agent) apply(ctx context.Context, s Settings) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	if b, err := s.budget(); err != nil {
		errs = append(errs, err)
	} else {
		a.p.SetBudget(b)
	}
	if !a.deferLog && (a.closeFn == nil || s.LogFile != a.applied.LogFile) {
		l, c, err := openLog(s.LogFile, a.stderr)
		if err != nil {
			errs = append(errs, err)
		}
		if a.closeFn != nil {
			_ = a.closeFn()
		}
		a.p.SetLog(l)
		a.closeFn = c
	}
	if cfg, err := s.drainConfig(); err != nil {
		errs = append(errs, err)
	} else {
		a.p.SetDrainer(newDrainer(cfg))
	}
	if s.MetricsAddr != "" && !a.metrics {
		addr := s.MetricsAddr
		if addr == "on" {
			addr = DefaultMetricsAddr
		}
		if err := startMetrics(ctx, addr, a.p); err != nil {
			errs = append(errs, err)
		} else {
			a.metrics = true
		}
	}
	a.applied = s
	return errors.Join(errs...)
}

func (a *agent) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closeFn != nil {
		_ = a.closeFn()
	}
}

// Main runs sockreap-nri with args (without the program name) and returns
// its exit code.
func Main(args []string, stderr io.Writer) int {
	s := Settings{LogFile: DefaultLogFile, Budget: DefaultBudget.String()}
	fs := flag.NewFlagSet("sockreap-nri", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Socket, "socket", "", "NRI socket to connect to as a daemon (default /var/run/nri/nri.sock); unused when the runtime starts the plugin")
	fs.StringVar(&s.Name, "name", DefaultName, "plugin name to register with")
	fs.StringVar(&s.Idx, "idx", DefaultIdx, "plugin index, two digits (orders the runtime's plugins)")
	fs.StringVar(&s.Budget, "budget", s.Budget, "longest a pod's drain may take; the runtime's request timeout (NRI's default 2s) shortens it")
	fs.StringVar(&s.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (\"on\": "+DefaultMetricsAddr+"); off when empty")
	fs.StringVar(&s.LogFile, "log-file", s.LogFile, "JSON log, one line per pod; - for stderr")
	fs.StringVar(&s.StateDir, "state-dir", "", "directory of the kernel probe cache (default: the configuration file's state_dir, "+config.DefaultStateDir+")")
	fs.StringVar(&s.Config, "config", "", "sockreap configuration file: protocols, orphans, state_dir (default "+config.DefaultPath+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sockreap-nri: unexpected argument %q; it takes flags only (see -h)\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a := &agent{p: New(nil, nil, 0), stderr: stderr}
	defer a.close()
	// A plugin the runtime starts learns its log file from the drop-in
	// the runtime hands over once connected: it opens no log before.
	a.deferLog = Launched()
	if err := a.apply(ctx, s); err != nil {
		// Bad flags are the operator's to fix now; a pre-registered
		// plugin has no flags and gets here with the defaults.
		fmt.Fprintf(stderr, "sockreap-nri: %v\n", err)
		return 2
	}
	conn := Conn{Socket: s.Socket, Name: s.Name, Idx: s.Idx}
	conn.Configure = func(text string) error {
		ds := s
		a.mu.Lock()
		a.deferLog = false
		a.mu.Unlock()
		err := ParseDropIn(text, &ds)
		if err == nil {
			err = a.apply(ctx, ds)
		}
		if err != nil {
			// Fail open: a bad drop-in must not keep the plugin (and
			// with it every pod stop) from working with what it has.
			a.p.logger().Error("NRI configuration not fully applied", "error", err.Error())
		}
		return nil
	}
	if !a.deferLog {
		a.p.logger().Info("starting", "budget", s.Budget)
	}
	if err := a.p.Serve(ctx, conn); err != nil {
		a.p.logger().Error("stopped", "error", err.Error())
		fmt.Fprintf(stderr, "sockreap-nri: %v\n", err)
		return 1
	}
	return 0
}
