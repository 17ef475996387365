// Package pin keeps a container's network namespace reachable after every
// process in it is gone, by bind-mounting its nsfs file under
// <state dir>/pins/<container id> (what `ip netns` does under /run/netns).
// A pin also keeps the namespace alive, so each one must be released: by
// the poststop hook, or by gc when the container vanished without one.
package pin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sockreap/sockreap/internal/atomicfile"
	"github.com/sockreap/sockreap/internal/netns"
	"golang.org/x/sys/unix"
)

// Store is the pins under one state directory.
type Store struct {
	Dir string // the state directory, e.g. /run/sockreap
}

// Meta is what is recorded about a pin next to it.
type Meta struct {
	ID      string    `json:"id"`
	PID     int       `json:"pid,omitempty"` // the container process the namespace was taken from
	Netns   string    `json:"netns"`         // net:[inode]
	Dev     uint64    `json:"dev"`
	Ino     uint64    `json:"ino"`
	Created time.Time `json:"created"`
	Bundle  string    `json:"bundle,omitempty"`
	// RuntimeState is the runtime's state directory for the container
	// (e.g. /run/runc/<id>); while it exists the runtime still knows the
	// container. Empty when it could not be found out.
	RuntimeState string `json:"runtime_state,omitempty"`
}

// Pin is one pinned namespace.
type Pin struct {
	ID      string
	Path    string   // <dir>/pins/<id>
	Mounted bool     // Path is a network namespace mount (false: a leftover file)
	NS      netns.ID // identity of the pinned namespace, when Mounted
	Meta    *Meta    // nil when the metadata is missing or unreadable
}

// Age is how long ago the pin was made, 0 when unknown.
func (p *Pin) Age(now time.Time) time.Duration {
	if p.Meta == nil || p.Meta.Created.IsZero() {
		return 0
	}
	return now.Sub(p.Meta.Created)
}

// Errors.
var (
	ErrNoPin = errors.New("no pin")
)

// ErrOtherNetns is returned by Pin when the container id already pins a
// different namespace (a leftover from an earlier container with that id).
type ErrOtherNetns struct{ Existing *Pin }

func (e *ErrOtherNetns) Error() string {
	return fmt.Sprintf("pin %s already holds another network namespace %s", e.Existing.Path, e.Existing.NS)
}

func (s Store) pinsDir() string { return filepath.Join(s.Dir, "pins") }
func (s Store) metaDir() string { return filepath.Join(s.Dir, "meta") }

// Path returns where container id's pin lives.
func (s Store) Path(id string) string { return filepath.Join(s.pinsDir(), id) }

func (s Store) metaPath(id string) string { return filepath.Join(s.metaDir(), id+".json") }
func (s Store) lockPath(id string) string { return filepath.Join(s.metaDir(), id+".lock") }

// ValidID checks that a container id can name a file: runtimes restrict ids
// much further, but a hook must not trust its input.
func ValidID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 200 {
		return fmt.Errorf("container id %q cannot name a pin (empty, a path, or too long)", id)
	}
	return nil
}

// Pin bind-mounts the network namespace at source (e.g. /proc/<pid>/ns/net)
// to the pin of m.ID and records m. Pinning the same namespace again is a
// no-op; a pin of another namespace under the same id is an *ErrOtherNetns.
func (s Store) Pin(source string, m Meta) (*Pin, error) {
	if err := ValidID(m.ID); err != nil {
		return nil, err
	}
	id, err := netns.IDOf(source)
	if err != nil {
		return nil, fmt.Errorf("pin network namespace of container %s: %w", m.ID, err)
	}
	if err := s.setup(); err != nil {
		return nil, err
	}
	path := s.Path(m.ID)
	if existing, err := s.Get(m.ID); err == nil && existing.Mounted {
		if existing.NS == id {
			return existing, nil
		}
		return nil, &ErrOtherNetns{Existing: existing}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o400)
	if err != nil {
		return nil, fmt.Errorf("pin network namespace of container %s: create %s: %w", m.ID, path, err)
	}
	f.Close()
	if err := unix.Mount(source, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("pin network namespace of container %s: bind-mount %s on %s: %w", m.ID, source, path, err)
	}
	got, err := netns.IDOf(path)
	if err != nil || got != id {
		// The process exited and its pid was reused between the two
		// looks: what is mounted is not the container's namespace.
		s.unmount(path)
		if err == nil {
			err = fmt.Errorf("namespace changed from %s to %s while pinning (process %s exited?)", id, got, source)
		}
		return nil, fmt.Errorf("pin network namespace of container %s: %w", m.ID, err)
	}
	m.Netns, m.Dev, m.Ino = id.String(), id.Dev, id.Ino
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	if err := s.writeMeta(m); err != nil {
		// The pin works without its metadata; gc then judges it by
		// its processes only.
		return &Pin{ID: m.ID, Path: path, Mounted: true, NS: id}, err
	}
	return &Pin{ID: m.ID, Path: path, Mounted: true, NS: id, Meta: &m}, nil
}

// setup creates the state directories and makes the pins directory a shared
// mount point, as `ip netns` does for /run/netns: a mount namespace cloned
// while a pin exists then receives the unmount too, instead of keeping a
// copy of the pin (and so the network namespace) alive.
func (s Store) setup() error {
	for _, d := range []string{s.pinsDir(), s.metaDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state directory %s: %w", d, err)
		}
	}
	dir := s.pinsDir()
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	} else if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	// Not a mount point yet. Serialise with hooks doing the same, so the
	// directory is bind-mounted onto itself once, not once per hook.
	lock, err := os.OpenFile(filepath.Join(s.Dir, "pins.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

func (s Store) writeMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := s.metaPath(m.ID)
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("record pin metadata %s: %w", path, err)
	}
	return nil
}

// Get returns container id's pin, or an error wrapping ErrNoPin.
func (s Store) Get(id string) (*Pin, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	path := s.Path(id)
	if _, err := os.Lstat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w at %s", id, ErrNoPin, path)
		}
		return nil, fmt.Errorf("container %s: look at pin %s: %w", id, path, err)
	}
	p := &Pin{ID: id, Path: path}
	if nsid, err := netns.IDOf(path); err == nil {
		p.Mounted, p.NS = true, nsid
	}
	if b, err := os.ReadFile(s.metaPath(id)); err == nil {
		var m Meta
		if json.Unmarshal(b, &m) == nil {
			p.Meta = &m
		}
	}
	return p, nil
}

// List returns every pin, sorted by container id.
func (s Store) List() ([]*Pin, error) {
	ents, err := os.ReadDir(s.pinsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pins in %s: %w", s.pinsDir(), err)
	}
	var pins []*Pin
	for _, e := range ents {
		p, err := s.Get(e.Name())
		if err != nil {
			continue // released meanwhile, or a name that is no id
		}
		pins = append(pins, p)
	}
	sort.Slice(pins, func(i, j int) bool { return pins[i].ID < pins[j].ID })
	return pins, nil
}

// Release unmounts container id's pin and removes it with its metadata.
// released is false when there was no pin.
func (s Store) Release(id string) (released bool, err error) {
	if err := ValidID(id); err != nil {
		return false, err
	}
	path := s.Path(id)
	_, statErr := os.Lstat(path)
	if err := s.unmount(path); err != nil {
		return false, fmt.Errorf("release pin of container %s: %w", id, err)
	}
	os.Remove(s.metaPath(id))
	return statErr == nil, nil
}

// unmount detaches whatever is mounted on path (possibly stacked mounts)
// and removes the file.
func (s Store) unmount(path string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Lock takes the exclusive lock of container id's pin, so that a poststop
// hook and gc never work on the same pin at once. With wait false it fails
// with unix.EWOULDBLOCK when someone else holds it. Unlock also removes the
// lock file once the pin is gone.
func (s Store) Lock(id string, wait bool) (unlock func(), err error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.metaDir(), 0o700); err != nil {
		return nil, fmt.Errorf("lock pin of container %s: %w", id, err)
	}
	path := s.lockPath(id)
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock pin of container %s: %w", id, err)
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock pin of container %s: %w", id, err)
		}
		// The holder before us may have removed the file: then our
		// lock is on a dead inode and we must start over.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return func() {
				if _, err := os.Lstat(s.Path(id)); errors.Is(err, fs.ErrNotExist) {
					os.Remove(path)
				}
				f.Close()
			}, nil
		}
		f.Close()
	}
}
