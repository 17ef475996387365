// Package logging writes sockreap's logs: log/slog JSON lines appended to a
// file, times in UTC. Never stdout, which belongs to the OCI runtime calling
// the hook.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sockreap/sockreap/internal/safefs"
)

// Open returns a logger that appends JSON lines to path, creating the file
// and its directory when missing, and a function that closes the file. When
// the file cannot be opened the logger writes to fallback instead (the
// hook's stderr, which runtimes show in their own error) and err says why.
//
// Each record is one write(2) on an O_APPEND file, so lines from hooks
// running in parallel never interleave.
func Open(path string, level slog.Level, fallback io.Writer) (log *slog.Logger, closeFn func() error, err error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: utc}
	f, err := openFile(path)
	if err != nil {
		if fallback == nil {
			fallback = io.Discard
		}
		return slog.New(slog.NewJSONHandler(fallback, opts)), func() error { return nil }, err
	}
	return slog.New(slog.NewJSONHandler(f, opts)), f.Close, nil
}

// utc writes record times in UTC: the local zone would be read from
// /etc/localtime by every hook process, for one log line.
func utc(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 && a.Value.Kind() == slog.KindTime {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}

func openFile(path string) (*os.File, error) {
	if path == "" {
		return nil, fmt.Errorf("open log file: no path given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open log file %s: create directory: %w", path, err)
	}
	if path == os.DevNull {
		return os.OpenFile(path, os.O_WRONLY, 0)
	}
	// The hook runs as root: a log path others could redirect (a
	// symlink, a file they own, a directory they may write) would let
	// them append to any file.
	if err := safefs.CheckParents(path); err != nil {
		return nil, fmt.Errorf("refusing log file %s: %w", path, err)
	}
	f, err := safefs.OpenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("refusing log file %s: %w", path, err)
	}
	return f, nil
}
