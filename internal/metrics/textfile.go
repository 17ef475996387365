package metrics

import (
	"bytes"
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
	PromFile   = "sockreap.prom"       // the exposition node_exporter reads
	StateFile  = "sockreap.state"      // the counters (state.go), flocked while updated
	PromLock   = ".sockreap.prom.lock" // held by the writer publishing the exposition
	runningDir = ".sockreap-running"   // a marker per hook process at work
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
	// dir is Dir, opened once and checked: every file in it is reached
	// through it, so a directory swapped for another (or a symlink)
	// after the check changes nothing.
	dir *os.File
}

// Close lets go of the directory.
func (t *Textfile) Close() error { return t.dir.Close() }

func (t *Textfile) runDir() string {
	if t.RunDir != "" {
		return t.RunDir
	}
	return filepath.Join(t.Dir, runningDir)
}

// Open returns the textfile sink for dir, or Nop when dir is empty or
// does not exist (no node_exporter here: metrics are quietly off) or
// cannot be used.
func Open(dir string) Sink {
	t, err := OpenTextfile(dir)
	if err != nil {
		return Nop{}
	}
	return t
}

// ErrNoDir is OpenTextfile's error for a directory that does not exist.
var ErrNoDir = errors.New("no metrics directory")

// OpenTextfile returns the textfile sink for dir: a directory (not a
// symlink) owned by root or the caller that only its owner may write, so
// that nobody else can plant files sockreap then writes to as root.
func OpenTextfile(dir string) (*Textfile, error) {
	if dir == "" {
		return nil, ErrNoDir
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("%w %s", ErrNoDir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics directory %s: %w (a directory, not a symlink, is needed)", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("metrics directory %s: %w", dir, err)
	}
	if euid := uint32(os.Geteuid()); (st.Uid != 0 && st.Uid != euid) || st.Mode&0o022 != 0 {
		d.Close()
		return nil, fmt.Errorf("metrics directory %s: owned by uid %d with mode %#o: others could plant files there; make it root's, writable by its owner only (chown root; chmod go-w)",
			dir, st.Uid, st.Mode&0o7777)
	}
	return &Textfile{Dir: dir, dir: d}, nil
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

// Update applies fn to the counters under the state file's lock and
// writes them back in place, then publishes the exposition. Concurrent
// updaters (hooks of containers stopping together) queue on the lock,
// which they hold only to read, add and write the counters, and lose
// nothing; the exposition is written by one of them at a time (publish).
func (t *Textfile) Update(fn func(*Recorder)) error {
	start := time.Now()
	f, err := t.lock()
	if err != nil {
		t.dropMarker() // not killed: it gave up
		return err
	}
	r, err := decode(f)
	if err != nil {
		// A damaged state (a crash mid-write) restarts the counters:
		// Prometheus reads it as a counter reset.
		r = NewRecorder()
	}
	if r.Gen == 0 {
		// A new or restarted state goes on from the generation last
		// published, or publishers would take it for an old one.
		r.Gen = t.publishedGen()
	}
	if t.RunDir != "" && !slices.Contains(r.RunDirs, t.RunDir) {
		r.RunDirs = append(r.RunDirs, t.RunDir)
	}
	t.sweep(r)
	fn(r)
	r.Gen++
	err = writeState(f, r)
	defer f.Close()
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err != nil {
		return err
	}
	var deadline time.Time
	if t.LockWait > 0 {
		deadline = start.Add(t.LockWait)
	}
	return t.publish(f, r, deadline)
}

// writeState writes the counters in place, under the lock: no rename,
// which on ext4 would start writeback of the file at once (auto_da_alloc),
// milliseconds on a busy disk. A fixed-width header holds the generation,
// so that publishers compare it without reading the rest.
func writeState(f *os.File, r *Recorder) error {
	state := encodeState(r)
	if _, err := f.WriteAt(state, 0); err != nil {
		return fmt.Errorf("write metrics state %s: %w", f.Name(), err)
	}
	if err := f.Truncate(int64(len(state))); err != nil {
		return fmt.Errorf("write metrics state %s: %w", f.Name(), err)
	}
	return nil
}

// publish writes the exposition of the latest counters in state; r is
// what this writer left there. One writer publishes at a time (the lock on
// PromLock, which also holds the generation last published, so the
// exposition never goes back to older counts); one that finds it taken
// leaves the work to its holder, who looks at the counters' generation
// after letting go, so the last update is always published. Past deadline
// (when set) it stops looking: a later writer, gc or stats publishes what
// is left.
func (t *Textfile) publish(state *os.File, r *Recorder, deadline time.Time) error {
	lockPath := filepath.Join(t.Dir, PromLock)
	fd, err := unix.Openat(int(t.dir.Fd()), PromLock, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", lockPath, err)
	}
	defer unix.Close(fd)
	for {
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil // the holder publishes this update too
			}
			return fmt.Errorf("lock %s: %w", lockPath, err)
		}
		last := readGen(fd)
		if r == nil || r.Gen <= last {
			// Published already, or older than what was: the
			// state's own generation decides. One below the last
			// published is a state restarted from scratch (lost,
			// damaged, restored): published as it is.
			r = nil
			if gen, err := genOf(state); err == nil && gen != last {
				r, _ = readState(state)
			}
		}
		var perr error
		published := false
		if r != nil && r.Gen != last {
			var b bytes.Buffer
			if perr = r.WriteText(&b); perr == nil {
				if perr = t.swapIn(PromFile, b.Bytes()); perr == nil {
					last, published = r.Gen, true
					_, _ = unix.Pwrite(fd, []byte(fmt.Sprintf("%020d", last)), 0)
				}
			}
		}
		unix.Flock(fd, unix.LOCK_UN)
		if perr != nil || !published {
			return perr // nothing new, or a state that cannot be read
		}
		// An update made while this writer held the lock is seen here.
		gen, err := genOf(state)
		if err != nil || gen == last || (!deadline.IsZero() && time.Now().After(deadline)) {
			return nil
		}
		r = nil
	}
}

// genOf reads the counters' generation from the state file's header.
func genOf(state *os.File) (uint64, error) {
	if err := unix.Flock(int(state.Fd()), unix.LOCK_SH); err != nil {
		return 0, err
	}
	defer unix.Flock(int(state.Fd()), unix.LOCK_UN)
	var h [21]byte
	if _, err := state.ReadAt(h[:], 0); err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(h[:20]), 10, 64)
}

// readState reads the counters from the state file.
func readState(state *os.File) (*Recorder, error) {
	if err := unix.Flock(int(state.Fd()), unix.LOCK_SH); err != nil {
		return nil, err
	}
	defer unix.Flock(int(state.Fd()), unix.LOCK_UN)
	if _, err := state.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return decode(state)
}

// publishedGen is the generation last published, 0 when none.
func (t *Textfile) publishedGen() uint64 {
	fd, err := unix.Openat(int(t.dir.Fd()), PromLock, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	return readGen(fd)
}

// readGen reads the generation last published from the publish lock file.
func readGen(fd int) uint64 {
	var b [20]byte
	if n, err := unix.Pread(fd, b[:], 0); err != nil || n != len(b) {
		return 0
	}
	g, _ := strconv.ParseUint(string(b[:]), 10, 64)
	return g
}

// Load reads the counters of the textfile in dir, counting hooks that were
// killed meanwhile.
func Load(dir string) (*Recorder, error) {
	t, err := OpenTextfile(dir)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var out *Recorder
	err = t.Update(func(r *Recorder) { out = r })
	return out, err
}

// lock opens the state file and takes its exclusive lock.
func (t *Textfile) lock() (*os.File, error) {
	path := filepath.Join(t.Dir, StateFile)
	fd, err := unix.Openat(int(t.dir.Fd()), StateFile, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open metrics state %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
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
	return decodeState(b)
}

// swapIn writes data to a temporary file beside name and exchanges the
// two atomically (renameat2 RENAME_EXCHANGE), then removes the old one. A
// plain rename over name would do as well for readers, but on ext4 it
// flushes the new file at once (auto_da_alloc); the exchange does not.
// No fsync either: a crash may lose the latest figures, which Prometheus
// takes as a counter reset.
func (t *Textfile) swapIn(name string, data []byte) error {
	dfd := int(t.dir.Fd())
	tmp := "." + name + ".tmp." + strconv.Itoa(os.Getpid())
	_ = unix.Unlinkat(dfd, tmp, 0) // left by a process killed here
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(t.Dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write %s: %w", filepath.Join(t.Dir, tmp), werr)
	}
	err = unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_EXCHANGE)
	if err != nil {
		// No file to exchange with yet (or a filesystem without the
		// exchange): a plain rename.
		err = unix.Renameat(dfd, tmp, dfd, name)
	}
	_ = unix.Unlinkat(dfd, tmp, 0)
	if err != nil {
		return fmt.Errorf("replace %s: %w", filepath.Join(t.Dir, name), err)
	}
	return nil
}

// End marks this process's work as done without counting anything (its
// run is counted later, by another process).
func (t *Textfile) End() { t.dropMarker() }

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
	// A runtime kills a hook at its OCI timeout, a whole number of
	// seconds: a hook started less than a second ago is at work, without
	// a look at /proc. With many hooks queued on the lock, that is most.
	var young uint64
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		if now := uint64(ts.Sec)*clockTicks + uint64(ts.Nsec)/(1e9/clockTicks); now > clockTicks {
			young = now - clockTicks
		}
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
		if young > 0 && start > young {
			continue // started within the last second
		}
		if now, err := startTime(pid); err == nil && now == start {
			continue // still at work
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			r.killed(parts[0])
		}
	}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture sockreap runs on.
const clockTicks = 100

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
