// Package safefs opens, reads and creates the files sockreap works with as
// root without following a symlink at the last step, without reading more
// than a bound, and refuses directories that another user could change
// under it. The standard library has no "no-follow" or "bounded" variants
// of os.ReadFile and os.MkdirAll, and no library of the field offers
// exactly these checks, hence this small package.
package safefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is returned by ReadFile for a file above its limit.
var ErrTooLarge = errors.New("file too large")

// ErrSymlink is returned when the last element of a path is a symlink
// where sockreap expects a file or directory of its own.
var ErrSymlink = errors.New("is a symlink")

// ErrNotRegular is returned for a path that is no regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrUnsafe is returned for a directory or file that users other than its
// owner (or an owner other than root or the caller) could change.
var ErrUnsafe = errors.New("writable by others")

// Open opens an existing regular file for reading without following a
// symlink at the last element of path.
func Open(path string) (*os.File, error) {
	f, _, err := openRegular(path, unix.O_RDONLY, 0)
	return f, err
}

// openRegular opens path with flags (and mode, for O_CREAT) following no
// symlink at its last element, and refuses what is not a regular file;
// it returns the file's stat. O_NONBLOCK keeps a FIFO planted at path
// from blocking the open.
func openRegular(path string, flags int, mode uint32) (*os.File, *unix.Stat_t, error) {
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, mode)
	if err != nil {
		return nil, nil, wrapOpen(path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return os.NewFile(uintptr(fd), path), &st, nil
}

// OpenPrivate opens path for appending, creating it with mode 0600 when it
// is missing. It follows no symlink at the last element and refuses a file
// that is not regular or that group or others may write.
func OpenPrivate(path string) (*os.File, error) {
	f, st, err := openRegular(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT, 0o600)
	if err != nil {
		return nil, err
	}
	if err := ownerOK(path, st); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func wrapOpen(path string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		return &fs.PathError{Op: "open", Path: path, Err: ErrSymlink}
	}
	return &fs.PathError{Op: "open", Path: path, Err: err}
}

// ReadFile reads the regular file path, following no symlink at its last
// element, and fails with ErrTooLarge (without reading it) when it holds
// more than limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, tooLarge(path, fi.Size(), limit)
	}
	// The file may grow while it is read: read one byte past the limit.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(path, int64(len(b)), limit)
	}
	return b, nil
}

func tooLarge(path string, size, limit int64) error {
	return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: %d bytes or more, the limit is %d", ErrTooLarge, size, limit)}
}

// Size returns the size of the regular file path (not following a symlink
// at its last element).
func Size(path string) (int64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, &fs.PathError{Op: "stat", Path: path, Err: ErrNotRegular}
	}
	return fi.Size(), nil
}

// ReadConfig reads a file whose content decides what runs as root (a
// configuration file) within limit bytes. A symlinked file (configuration
// management links them) is resolved first; what it leads to must pass
// CheckFile. A missing file is returned as is (fs.ErrNotExist).
func ReadConfig(path string, limit int64) ([]byte, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if err := CheckFile(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w; refusing a configuration others can change", err)
	}
	return ReadFile(path, limit)
}

// MkdirPrivate creates directory path with mode 0700 (its missing parents
// 0755), or checks an existing one with CheckOwnDir.
func MkdirPrivate(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := unix.Mkdir(path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return &fs.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return CheckOwnDir(path)
}

// CheckOwnDir checks that path is a directory (not a symlink to one) that
// only its owner may write, owned by root or the caller.
func CheckOwnDir(path string) error {
	st, err := lstatKind(path, unix.S_IFDIR, errNotDir)
	if err != nil {
		return err
	}
	return ownerOK(path, st)
}

var errNotDir = errors.New("not a directory")

// lstatKind stats path itself (not what a symlink names) and refuses it,
// with ErrSymlink or else notKind, unless its type is kind (unix.S_IF*).
func lstatKind(path string, kind uint32, notKind error) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case kind:
		return &st, nil
	case unix.S_IFLNK:
		return nil, &fs.PathError{Op: "check", Path: path, Err: ErrSymlink}
	default:
		return nil, &fs.PathError{Op: "check", Path: path, Err: notKind}
	}
}

// CheckDir checks the directory path with CheckOwnDir and its ancestors
// with CheckParents.
func CheckDir(path string) error {
	if err := CheckOwnDir(path); err != nil {
		return err
	}
	return CheckParents(path)
}

// CheckParents checks each ancestor of path after resolving symlinks:
// none may be writable by others (world-writable) unless it is sticky
// (like /tmp, where nobody can rename what another user owns), nor owned
// by anyone but root or the caller, so that nobody else can swap path for
// something else. Group-writable ancestors are accepted (Ubuntu's
// /var/log is root:syslog 0775): no-follow opens and owner checks on the
// file itself cover what a group member could plant there.
func CheckParents(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return &fs.PathError{Op: "check", Path: path, Err: err}
	}
	euid := uint32(os.Geteuid())
	for dir := real; ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &fs.PathError{Op: "check", Path: dir, Err: err}
		}
		if st.Mode&unix.S_ISVTX == 0 {
			if st.Mode&0o002 != 0 {
				return fmt.Errorf("%s: parent %w", path, &fs.PathError{Op: "check", Path: dir,
					Err: fmt.Errorf("%w (mode %#o): anyone may replace what is in it (chmod o-w)", ErrUnsafe, st.Mode&0o7777)})
			}
			if st.Uid != 0 && st.Uid != euid {
				return fmt.Errorf("%s: parent %w", path, &fs.PathError{Op: "check", Path: dir,
					Err: fmt.Errorf("%w: owned by uid %d, not by root or uid %d", ErrUnsafe, st.Uid, euid)})
			}
		}
		if dir == "/" || dir == "." {
			return nil
		}
	}
}

// CheckFile checks a file whose content decides what sockreap does as
// root (a configuration file): a regular file, not a symlink, owned by
// root or the caller, writable by nobody else, in directories nobody else
// may rewrite (CheckParents).
func CheckFile(path string) error {
	st, err := lstatKind(path, unix.S_IFREG, ErrNotRegular)
	if err != nil {
		return err
	}
	if err := ownerOK(path, st); err != nil {
		return err
	}
	return CheckParents(path)
}

// ownerOK refuses a file that group or others may write, or whose owner is
// neither root nor the caller.
func ownerOK(path string, st *unix.Stat_t) error {
	if st.Mode&0o022 != 0 {
		return &fs.PathError{Op: "check", Path: path, Err: fmt.Errorf("%w (mode %#o): make it writable by its owner only (chmod go-w)", ErrUnsafe, st.Mode&0o7777)}
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid {
		return &fs.PathError{Op: "check", Path: path, Err: fmt.Errorf("%w: owned by uid %d, not by root or uid %d", ErrUnsafe, st.Uid, euid)}
	}
	return nil
}
