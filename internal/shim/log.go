package shim

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// newLogger writes the shim's own lines where runc writes its own: the
// --log file (appended, as runc does) in the --log-format, else stderr.
// Levels are lower case like runc's (logrus) so that containerd, which
// reads the last "error" line of the runtime log, finds ours too.
// toFile is false when the lines go to stderr.
func newLogger(inv *Invocation, stderr io.Writer) (log *slog.Logger, toFile bool, closeFn func()) {
	var w io.Writer = stderr
	closeFn = func() {}
	level := slog.LevelWarn // runc says nothing on stderr unless asked
	if inv.Log != "" {
		if f, err := os.OpenFile(inv.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644); err == nil {
			w, toFile, closeFn = f, true, func() { f.Close() }
			level = slog.LevelInfo
		}
	}
	if inv.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.LevelKey {
			a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
		}
		return a
	}}
	var h slog.Handler
	if inv.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("component", "sockreap-shim"), toFile, closeFn
}
