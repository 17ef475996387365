// Package steptime times the steps of one short-lived sockreap-hook
// process, for the hook latency benchmark (test/bench/hooklatency -steps).
// It is off unless the environment variable SOCKREAP_STEPTIME names a
// file: then each Mark records the time since the previous one and Flush
// appends one JSON line to that file. Off, a Mark is a nil check; nothing
// in the log or the behaviour depends on it.
package steptime

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Env names the file the steps are appended to.
const Env = "SOCKREAP_STEPTIME"

var (
	mu    sync.Mutex
	on    *run
	start = time.Now() // as close to the process start as Go lets code run
)

type run struct {
	file  string
	last  time.Time
	steps []step
}

type step struct {
	Name string  `json:"step"`
	MS   float64 `json:"ms"`
}

func init() {
	if f := os.Getenv(Env); f != "" {
		on = &run{file: f, last: start}
	}
}

// Mark ends the step name: the time since the previous mark (or the
// package's initialisation) is recorded under it.
func Mark(name string) {
	if on == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	on.steps = append(on.steps, step{name, float64(now.Sub(on.last).Microseconds()) / 1000})
	on.last = now
}

// Flush appends the steps marked so far to the file, as one line:
// {"label": ..., "start_unix_ns": ..., "steps": [{"step": ..., "ms": ...}, ...]}.
// The start lets a caller that timed the whole process tell what the
// process start cost (time before this package's initialisation).
func Flush(label string) {
	if on == nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	b, err := json.Marshal(struct {
		Label       string `json:"label"`
		StartUnixNS int64  `json:"start_unix_ns"`
		Steps       []step `json:"steps"`
	}{label, start.UnixNano(), on.steps})
	if err != nil {
		return
	}
	f, err := os.OpenFile(on.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
	on.steps = nil
}
