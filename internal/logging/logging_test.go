package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestOpenAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "hook.log")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			log, closeFn, err := Open(path, slog.LevelInfo, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer closeFn()
			log.Info("stage", "container", "c", "n", i, "pad", strings.Repeat("x", 3000))
		}(i)
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 20 {
		t.Fatalf("%d lines, want 20", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["container"] != "c" {
			t.Fatalf("not a JSON log line (%v): %.80s", err, l)
		}
	}
}

func TestOpenFallsBack(t *testing.T) {
	var buf bytes.Buffer
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	log, _, err := Open(filepath.Join(blocker, "hook.log"), slog.LevelInfo, &buf)
	if err == nil || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("Open under a file: err = %v, want one naming the path", err)
	}
	log.Info("hello")
	if !strings.Contains(buf.String(), `"msg":"hello"`) {
		t.Errorf("fallback got %q", buf.String())
	}
}

// Record times are written in UTC, whatever the local zone.
func TestTimesInUTC(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hook.log")
	log, closeFn, err := Open(path, slog.LevelInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x")
	closeFn()
	b, _ := os.ReadFile(path)
	var line struct{ Time string }
	if err := json.Unmarshal(b, &line); err != nil || !strings.HasSuffix(line.Time, "Z") {
		t.Errorf("time %q (%v), want UTC", line.Time, err)
	}
}
