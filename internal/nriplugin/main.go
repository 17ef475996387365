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
)

// DefaultLogFile receives the plugin's JSON lines; "-" means stderr.
const DefaultLogFile = "/var/log/sockreap/nri.log"

// DefaultMetricsAddr is where --metrics-addr=on serves /metrics.
const DefaultMetricsAddr = "127.0.0.1:9863"

// Settings are the plugin's flags; a pre-registered plugin, which the
// runtime starts without arguments, takes the same keys from its NRI
// drop-in configuration (/etc/nri/conf.d/NN-sockreap.conf, TOML).
type Settings struct {
	Socket      string `toml:"socket"`
	Name        string `toml:"name"`
	Idx         string `toml:"idx"`
	Budget      string `toml:"budget"`
	MetricsAddr string `toml:"metrics_addr"`
	LogFile     string `toml:"log_file"`
	Config      string `toml:"config"`
}

// ParseDropIn reads NRI drop-in configuration text over s. Unknown keys are
// errors, so a typo is not silently ignored.
func ParseDropIn(text string, s *Settings) error {
	dec := toml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return fmt.Errorf("NRI configuration for sockreap: %w (keys: socket, name, idx, budget, metrics_addr, log_file, config)", err)
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

// openLog opens the JSON log named by path ("-": stderr).
func openLog(path string, stderr io.Writer) (*slog.Logger, func() error, error) {
	if path == "-" {
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() error { return nil }, nil
	}
	return logging.Open(path, slog.LevelInfo, stderr)
}

// Main runs sockreap-nri with args (without the program name) and returns
// its exit code.
func Main(args []string, stderr io.Writer) int {
	s := Settings{LogFile: DefaultLogFile, Budget: DefaultBudget.String()}
	fs := flag.NewFlagSet("sockreap-nri", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.Socket, "socket", "", "NRI socket to connect to as a daemon (default /var/run/nri/nri.sock); ignored when the runtime starts the plugin")
	fs.StringVar(&s.Name, "name", DefaultName, "plugin name to register with")
	fs.StringVar(&s.Idx, "idx", DefaultIdx, "plugin index (two digits; orders plugins)")
	fs.StringVar(&s.Budget, "budget", s.Budget, "longest a pod's drain may take; the runtime's request timeout (NRI default 2s) shortens it")
	fs.StringVar(&s.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (\"on\" means "+DefaultMetricsAddr+"); off when empty")
	fs.StringVar(&s.LogFile, "log-file", s.LogFile, "JSON log file, one line per pod; - for stderr")
	fs.StringVar(&s.Config, "config", "", "sockreap configuration file (state_dir, protocols, orphans; default "+config.DefaultPath+")")
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
	budget, err := s.budget()
	if err != nil {
		fmt.Fprintf(stderr, "sockreap-nri: %v\n", err)
		return 2
	}
	cfgPath, required := s.Config, s.Config != ""
	if cfgPath == "" {
		cfgPath = config.DefaultPath
	}
	cfg, err := config.Load(cfgPath, required)
	if err != nil {
		fmt.Fprintf(stderr, "sockreap-nri: %v\n", err)
		return 2
	}
	cfg.ApplyEnv(os.Getenv)

	log, closeLog, err := openLog(s.LogFile, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sockreap-nri: %v; logging to stderr\n", err)
	}
	var mu sync.Mutex
	defer func() { mu.Lock(); closeLog(); mu.Unlock() }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	drainer := newDrainer(cfg)
	p := New(drainer, log, budget)
	metrics, err := startMetrics(ctx, s.MetricsAddr, p)
	if err != nil {
		log.Error("metrics endpoint not started", "error", err.Error())
	}
	_ = metrics

	conn := Conn{Socket: s.Socket, Name: s.Name, Idx: s.Idx}
	conn.Configure = func(text string) error {
		// The runtime's drop-in configuration (pre-registered plugin).
		ds := s
		if err := ParseDropIn(text, &ds); err != nil {
			log.Error("ignoring NRI configuration", "error", err.Error())
			return nil
		}
		if b, err := ds.budget(); err != nil {
			log.Error("ignoring NRI configuration budget", "error", err.Error())
		} else {
			p.SetBudget(b)
		}
		if ds.LogFile != s.LogFile {
			l, c, err := openLog(ds.LogFile, stderr)
			if err != nil {
				log.Error("keeping the log file", "error", err.Error())
			} else {
				p.SetLog(l)
				mu.Lock()
				closeLog, log = c, l
				mu.Unlock()
			}
		}
		if ds.MetricsAddr != "" && s.MetricsAddr == "" {
			if _, err := startMetrics(ctx, ds.MetricsAddr, p); err != nil {
				p.logger().Error("metrics endpoint not started", "error", err.Error())
			}
		}
		return nil
	}
	p.logger().Info("starting", "launched", Launched(), "budget_ms", budget.Milliseconds(), "state_dir", cfg.StateDir)
	if err := p.Serve(ctx, conn); err != nil {
		p.logger().Error("stopped", "error", err.Error())
		fmt.Fprintf(stderr, "sockreap-nri: %v\n", err)
		return 1
	}
	return 0
}
