// Package pin keeps a container's network namespace reachable after every
// process in it is gone, by bind-mounting its nsfs file under
// <state dir>/pins/<container id> (what `ip netns` does under /run/netns).
// A pin also keeps the namespace alive, so each one must be released: by
// the poststop hook, or by gc when the container vanished without one.
package pin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sockreap/sockreap/internal/atomicfile"
	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/safefs"
	"golang.org/x/sys/unix"
)

// Store is the pins under one state directory.
type Store struct {
	Dir string // the state directory, e.g. /run/sockreap
}

// Meta is what is recorded about a pin next to it.
type Meta struct {
	ID string `json:"id"` // the container id
	// Key is the pin's name in the store (KeyOf the id and the runtime
	// root); "" means the id itself.
	Key string `json:"key,omitempty"`
	// Root is the runtime's state root (runc --root) the container
	// lives under, "" when unknown.
	Root    string    `json:"root,omitempty"`
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
	// Config is what createRuntime read in config.json, so that poststop
	// need not read it again; nil when it could not be read (or in pins
	// of older versions): poststop reads config.json then.
	Config *ConfigHints `json:"config,omitempty"`
	// Uncounted is createRuntime's run when its metrics were left to
	// whoever releases the pin (poststop, gc), to count in the same
	// update as their own: one metrics update per container, not two.
	Uncounted *Run `json:"uncounted,omitempty"`
}

// ConfigHints are the parts of config.json poststop needs: it did not opt
// out of draining (else there would be no pin), and where the container's
// neighbours are (for the safety check).
type ConfigHints struct {
	NetnsPath   string `json:"netns_path,omitempty"`
	CgroupsPath string `json:"cgroups_path,omitempty"`
}

// Run is a hook run recorded in a pin: how long createRuntime took up to
// the pin.
type Run struct {
	DurationUS int64 `json:"duration_us"`
}

// Pin is one pinned namespace.
type Pin struct {
	ID      string   // the pin's name in the store: its key (see KeyOf)
	Path    string   // <dir>/pins/<id>
	Mounted bool     // Path is a network namespace mount (false: a leftover file)
	NS      netns.ID // identity of the pinned namespace, when Mounted
	Meta    *Meta    // nil when the metadata is missing or unreadable
}

// Container is the id of the pinned container: the recorded one, else the
// pin's name.
func (p *Pin) Container() string {
	if p.Meta != nil && p.Meta.ID != "" {
		return p.Meta.ID
	}
	return p.ID
}

// KeyOf names the pin of container id under runtime root: the same id
// under two runtime roots (two runc --root, containerd namespaces, podman
// and docker on one host) are two containers and get two pins. The root
// enters as a short hash after "@", a character runc and crun ids cannot
// hold; with the root unknown the key is the id alone.
func KeyOf(id, root string) string {
	if root == "" {
		return id
	}
	sum := sha256.Sum256([]byte(filepath.Clean(root)))
	return id + "@" + hex.EncodeToString(sum[:6])
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

// ValidID checks that a container id can name a file and be printed:
// runtimes restrict ids much further (runc: letters, digits, "_+-."), but a
// hook must not trust its input. Refused: empty, "." and "..", a path,
// more than 200 bytes, invalid UTF-8, control characters.
func ValidID(id string) error {
	bad := id == "" || id == "." || id == ".." || len(id) > 200 || !utf8.ValidString(id) ||
		strings.ContainsFunc(id, func(r rune) bool { return r == '/' || unicode.IsControl(r) })
	if bad {
		return fmt.Errorf("container id %s cannot name a pin (empty, a path, too long, or holding control characters)", strconv.Quote(id))
	}
	return nil
}

// Check refuses a state directory that someone other than root (or the
// caller) could change: a symlink, a directory group or others may
// write, or one below such a directory. A missing directory is fine (the
// first pin creates it, mode 0700).
func (s Store) Check() error {
	if _, err := os.Lstat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := safefs.CheckDir(s.Dir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, d := range []string{s.pinsDir(), s.metaDir()} {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := safefs.CheckOwnDir(d); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return nil
}

// Pin bind-mounts the network namespace at source (e.g. /proc/<pid>/ns/net)
// to the pin m.Key (m.ID when empty) and records m; see PinNS.
func (s Store) Pin(source string, m Meta) (*Pin, error) {
	if err := ValidID(m.ID); err != nil {
		return nil, err
	}
	ns, err := netns.Open(source)
	if err != nil {
		return nil, fmt.Errorf("pin network namespace of container %s: %w", m.ID, err)
	}
	defer ns.Close()
	return s.PinNS(ns, m)
}

// PinNS bind-mounts the open namespace ns (the very one the caller checked,
// not whatever a path names a moment later) to the pin m.Key (m.ID when
// empty) and records
// m. Pinning the same namespace again is a no-op; a pin of another
// namespace under the same id is an *ErrOtherNetns. The pin is created
// without following symlinks and mounted through its own descriptor, so
// nothing outside the pins directory is ever mounted over.
func (s Store) PinNS(ns *netns.NS, m Meta) (*Pin, error) {
	if err := ValidID(m.ID); err != nil {
		return nil, err
	}
	if m.Key == "" {
		m.Key = m.ID
	}
	key := m.Key
	if err := ValidID(key); err != nil {
		return nil, err
	}
	id := ns.ID
	if err := s.setup(); err != nil {
		return nil, err
	}
	path := s.Path(key)
	if existing, err := s.Get(key); err == nil {
		if existing.Mounted {
			if existing.NS == id {
				return existing, nil
			}
			return nil, &ErrOtherNetns{Existing: existing}
		}
		// A leftover that is no namespace mount (a plain file, a
		// symlink): remove the name, never what it may point to.
		if err := s.unmount(path); err != nil {
			return nil, fmt.Errorf("pin network namespace of container %s: leftover %s: %w", m.ID, path, err)
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return nil, fmt.Errorf("pin network namespace of container %s: create %s: %w", m.ID, path, err)
	}
	target := "/proc/self/fd/" + strconv.Itoa(fd)
	err = unix.Mount("/proc/self/fd/"+strconv.Itoa(ns.Fd()), target, "none", unix.MS_BIND, "")
	unix.Close(fd)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("pin network namespace of container %s: bind-mount %s on %s: %w", m.ID, id, path, err)
	}
	got, err := idNoFollow(path)
	if err != nil || got != id {
		s.unmount(path)
		if err == nil {
			err = fmt.Errorf("%s holds %s, not %s", path, got, id)
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
		return &Pin{ID: key, Path: path, Mounted: true, NS: id}, err
	}
	return &Pin{ID: key, Path: path, Mounted: true, NS: id, Meta: &m}, nil
}

// idNoFollow is the namespace mounted at path; a symlink there is none.
func idNoFollow(path string) (netns.ID, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return netns.ID{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	return netns.IDOfFd(fd)
}

// setup creates the state directories and makes the pins directory a shared
// mount point, as `ip netns` does for /run/netns: a mount namespace cloned
// while a pin exists then receives the unmount too, instead of keeping a
// copy of the pin (and so the network namespace) alive.
func (s Store) setup() error {
	for _, d := range []string{s.Dir, s.pinsDir(), s.metaDir()} {
		if err := safefs.MkdirPrivate(d); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	if err := s.Check(); err != nil {
		return err
	}
	dir := s.pinsDir()
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err == nil {
		return nil
	} else if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	// Not a mount point yet. Serialise with hooks doing the same, so the
	// directory is bind-mounted onto itself once, not once per hook.
	lock, err := os.OpenFile(filepath.Join(s.Dir, "pins.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
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
	path := s.metaPath(m.Key)
	// Volatile: a pin does not survive a reboot, nor need its metadata.
	if err := atomicfile.WriteVolatile(path, b, 0o600); err != nil {
		return fmt.Errorf("record pin metadata %s: %w", path, err)
	}
	return nil
}

// Has reports whether a pin named id is in the store (mounted or not),
// without reading it.
func (s Store) Has(id string) bool {
	if ValidID(id) != nil {
		return false
	}
	_, err := os.Lstat(s.Path(id))
	return err == nil
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
	if nsid, err := idNoFollow(path); err == nil {
		p.Mounted, p.NS = true, nsid
	}
	if b, err := safefs.ReadFile(s.metaPath(id), maxMetaSize); err == nil {
		var m Meta
		if json.Unmarshal(b, &m) == nil {
			p.Meta = &m
		}
	}
	return p, nil
}

// maxMetaSize bounds a pin's metadata file (a few hundred bytes).
const maxMetaSize = 1 << 16

// List returns every pin, sorted by container id. It refuses a state
// directory that fails Check.
func (s Store) List() ([]*Pin, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
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

// unmount detaches the namespace mounts on path (possibly stacked) and
// removes the name. It unmounts only network namespace (nsfs) mounts and
// follows no symlink: a symlink in the pins directory is removed, never
// what it points to; any other mount there is left alone, with an error.
func (s Store) unmount(path string) error {
	for i := 0; i < 16; i++ {
		nsfs, err := isNsfsMount(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !nsfs {
			break
		}
		err = unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // no mount point: a plain nsfs file cannot be, but be sure
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove %s: something other than a network namespace is mounted there; left alone", path)
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// isNsfsMount reports whether path itself (not a symlink's target) is a
// namespace file, which in the pins directory only a mount can make it.
func isNsfsMount(path string) (bool, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, fs.ErrNotExist
		}
		return false, fmt.Errorf("look at %s: %w", path, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return sfs.Type == unix.NSFS_MAGIC, nil
}

// Lock takes the exclusive lock of container id's pin, so that a poststop
// hook and gc never work on the same pin at once. With wait false it fails
// with unix.EWOULDBLOCK when someone else holds it. Unlock also removes the
// lock file once the pin is gone.
func (s Store) Lock(id string, wait bool) (unlock func(), err error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	for _, d := range []string{s.Dir, s.metaDir()} {
		if err := safefs.MkdirPrivate(d); err != nil {
			return nil, fmt.Errorf("lock pin of container %s: state directory: %w", id, err)
		}
	}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("lock pin of container %s: %w", id, err)
	}
	path := s.lockPath(id)
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
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
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Lstat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
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

// Sweep removes pin metadata and lock files whose pin is gone: what a hook
// killed between releasing a pin and cleaning up after it leaves. A file a
// running hook has locked is left for the next sweep, as are temporary
// files younger than a minute (a metadata write may be under way).
func (s Store) Sweep() (removed int, err error) {
	if err := s.Check(); err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(s.metaDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", s.metaDir(), err)
	}
	keys := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp") {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute && fi.Mode().IsRegular() {
				if os.Remove(filepath.Join(s.metaDir(), name)) == nil {
					removed++
				}
			}
			continue
		}
		if key, ok := strings.CutSuffix(name, ".json"); ok {
			keys[key] = true
		} else if key, ok := strings.CutSuffix(name, ".lock"); ok {
			keys[key] = true
		}
	}
	for key := range keys {
		if ValidID(key) != nil {
			continue
		}
		if _, err := os.Lstat(s.Path(key)); !errors.Is(err, fs.ErrNotExist) {
			continue // pinned (or unreadable): not ours to sweep
		}
		unlock, err := s.Lock(key, false)
		if err != nil {
			continue // a hook holds it
		}
		if _, err := os.Lstat(s.Path(key)); errors.Is(err, fs.ErrNotExist) {
			if os.Remove(s.metaPath(key)) == nil {
				removed++
			}
			if _, err := os.Lstat(s.lockPath(key)); err == nil {
				removed++ // unlock removes it
			}
		}
		unlock()
	}
	return removed, nil
}
