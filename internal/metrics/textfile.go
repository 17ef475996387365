package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDir is where Debian's and most distributions' node_exporter
// textfile collector reads *.prom files.
const DefaultDir = "/var/lib/prometheus/node-exporter"

// Files in the metrics directory.
const (
	PromFile   = "sockreap.prom"     // the exposition node_exporter reads
	StateFile  = "sockreap.state"    // the counters (JSON), flocked while updated
	runningDir = ".sockreap-running" // a marker per hook process at work
)

// Textfile is the node_exporter textfile sink of one directory.
type Textfile struct {
	Dir string
	// RunDir holds the markers of hooks at work (Begin); "" is a
	// directory in Dir. A tmpfs (the state directory, under /run) makes
	// them cheap: a file created and removed per hook run. Every RunDir
	// used is kept in the state, so that any writer sweeps them all.
	RunDir string
	// LockWait bounds the wait for the state's lock, 0 for none. A hook
	// queueing behind many others on a loaded node must not outlast its
	// OCI timeout (the runtime would kill it before it logs): past the
	// wait its run goes uncounted, with an error.
	LockWait time.Duration
	marker   string // this process's running marker, "" when none
}

func (t *Textfile) runDir() string {
	if t.RunDir != "" {
		return t.RunDir
	}
	return filepath.Join(t.Dir, runningDir)
}

// Open returns the textfile sink for dir, or Nop when dir is empty or
// does not exist (no node_exporter here: metrics are quietly off).
func Open(dir string) Sink {
	t, err := OpenTextfile(dir)
	if err != nil {
		return Nop{}
	}
	return t
}

// OpenTextfile returns the textfile sink for dir, which must be a
// directory.
func OpenTextfile(dir string) (*Textfile, error) {
	if dir == "" {
		return nil, errors.New("no metrics directory given")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("metrics directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("metrics directory %s is not a directory", dir)
	}
	return &Textfile{Dir: dir}, nil
}

// Begin marks this process as a hook at work in stage, so that if it is
// killed before Record (a runtime kills a hook at its OCI timeout) the
// next writer counts it as killed. Failing to mark costs only that.
func (t *Textfile) Begin(stage string) {
	start, err := startTime(os.Getpid())
	if err != nil {
		return
	}
	dir := t.runDir()
	name := filepath.Join(dir, fmt.Sprintf("%s.%d.%d", stage, os.Getpid(), start))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		_ = os.Mkdir(dir, 0o755) // or made meanwhile by another hook
		f, err = os.OpenFile(name, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	}
	if err != nil {
		return
	}
	f.Close()
	t.marker = name
}

// Record adds e to the counters and rewrites the exposition.
func (t *Textfile) Record(e DrainEvent) error {
	return t.Update(func(r *Recorder) { r.Record(e) })
}

// SetGauges sets gauges and rewrites the exposition.
func (t *Textfile) SetGauges(g Gauges) error {
	return t.Update(func(r *Recorder) { r.SetGauges(g) })
}

// Update applies fn to the counters under the state file's lock, then
// writes the exposition, swapped in whole so that a reader sees the old
// file or the new one, and the state, in place. Concurrent updaters (hooks
// of containers stopping together) queue on the lock and lose nothing.
func (t *Textfile) Update(fn func(*Recorder)) error {
	f, err := t.lock()
	if err != nil {
		t.dropMarker() // not killed: it gave up
		return err
	}
	defer f.Close()
	r, err := decode(f)
	if err != nil {
		// A damaged state (a crash mid-write) restarts the counters:
		// Prometheus reads it as a counter reset.
		r = NewRecorder()
	}
	if t.RunDir != "" && !slices.Contains(r.RunDirs, t.RunDir) {
		r.RunDirs = append(r.RunDirs, t.RunDir)
	}
	t.sweep(r)
	fn(r)
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		return err
	}
	if err := swapIn(filepath.Join(t.Dir, PromFile), b.Bytes()); err != nil {
		return err
	}
	state, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode metrics state: %w", err)
	}
	// In place, under the lock: no rename, which on ext4 would start
	// writeback of the file at once (auto_da_alloc), milliseconds on a
	// busy disk for every hook.
	if _, err := f.WriteAt(state, 0); err != nil {
		return fmt.Errorf("write metrics state %s: %w", f.Name(), err)
	}
	if err := f.Truncate(int64(len(state))); err != nil {
		return fmt.Errorf("write metrics state %s: %w", f.Name(), err)
	}
	return nil
}

// Load reads the counters of the textfile in dir, counting hooks that were
// killed meanwhile.
func Load(dir string) (*Recorder, error) {
	t, err := OpenTextfile(dir)
	if err != nil {
		return nil, err
	}
	var out *Recorder
	err = t.Update(func(r *Recorder) { out = r })
	return out, err
}

// lock opens the state file and takes its exclusive lock.
func (t *Textfile) lock() (*os.File, error) {
	path := filepath.Join(t.Dir, StateFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open metrics state: %w", err)
	}
	how, deadline := unix.LOCK_EX, time.Time{}
	if t.LockWait > 0 {
		how, deadline = unix.LOCK_EX|unix.LOCK_NB, time.Now().Add(t.LockWait)
	}
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock metrics state %s: %w", path, err)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock metrics state %s: held by other writers for %s; this run is not counted", path, t.LockWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func decode(f *os.File) (*Recorder, error) {
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, err
	}
	r := NewRecorder()
	if len(b) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	r.init()
	return r, nil
}

// swapIn writes data to a temporary file beside path and exchanges the
// two atomically (renameat2 RENAME_EXCHANGE), then removes the old one. A
// plain rename over path would do as well for readers, but on ext4 it
// flushes the new file at once (auto_da_alloc); the exchange does not.
// No fsync either: a crash may lose the latest figures, which Prometheus
// takes as a counter reset.
func swapIn(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp."+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if err != nil {
		// No file to exchange with yet (or a filesystem without the
		// exchange): a plain rename.
		err = os.Rename(tmp, path)
	}
	os.Remove(tmp)
	if err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// dropMarker removes this process's running marker.
func (t *Textfile) dropMarker() {
	if t.marker != "" {
		os.Remove(t.marker)
		t.marker = ""
	}
}

// sweep removes this process's running marker and counts as killed the
// hooks whose marker outlived their process.
func (t *Textfile) sweep(r *Recorder) {
	t.dropMarker()
	for _, dir := range append([]string{filepath.Join(t.Dir, runningDir)}, r.RunDirs...) {
		sweepDir(dir, r)
	}
}

func sweepDir(dir string, r *Recorder) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		parts := strings.Split(e.Name(), ".")
		if len(parts) != 3 {
			continue
		}
		pid, err1 := strconv.Atoi(parts[1])
		start, err2 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if now, err := startTime(pid); err == nil && now == start {
			continue // still at work
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			r.killed(parts[0])
		}
	}
}

// startTime is a process's start time in clock ticks since boot (field 22
// of /proc/PID/stat): with the pid it names one process, whatever reuses
// the pid later.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
