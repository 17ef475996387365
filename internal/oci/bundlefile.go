package oci

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/safefs"
)

// bundleFile is a bundle's config.json opened for replacement, relative
// to a descriptor of its bundle directory: the file read and the file
// replaced are in the same directory whatever happens to the path
// meanwhile, and a config.json that is a symlink is not written through
// (root would otherwise rewrite whatever file it points at).
type bundleFile struct {
	dir  int // O_PATH descriptor of the bundle directory
	path string
	st   unix.Stat_t
}

const configName = "config.json"

// openBundleFile reads bundle/config.json within MaxConfigSize.
func openBundleFile(bundle string) (*bundleFile, []byte, error) {
	path := ConfigPath(bundle)
	dir, err := unix.Open(bundle, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("read bundle config %s: open bundle directory: %w", path, err)
	}
	b := &bundleFile{dir: dir, path: path}
	fd, err := unix.Openat(dir, configName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		b.Close()
		if errors.Is(err, unix.ELOOP) {
			return nil, nil, fmt.Errorf("bundle config %s is a symlink: not edited, as the hooks would be written into whatever it points at; make it a regular file", path)
		}
		return nil, nil, fmt.Errorf("read bundle config %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := unix.Fstat(fd, &b.st); err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("read bundle config %s: %w", path, err)
	}
	if b.st.Mode&unix.S_IFMT != unix.S_IFREG {
		b.Close()
		return nil, nil, fmt.Errorf("bundle config %s is not a regular file", path)
	}
	if b.st.Size > MaxConfigSize {
		b.Close()
		return nil, nil, fmt.Errorf("bundle config %s is larger than %d MiB, the most sockreap reads; not a usable config.json: %w", path, MaxConfigSize>>20, safefs.ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("read bundle config %s: %w", path, err)
	}
	if len(data) > MaxConfigSize {
		b.Close()
		return nil, nil, fmt.Errorf("bundle config %s is larger than %d MiB: %w", path, MaxConfigSize>>20, safefs.ErrTooLarge)
	}
	return b, data, nil
}

// Replace writes data to a temporary file in the bundle directory, with
// the old file's mode and (where allowed) owner, syncs it and renames it
// over config.json.
func (b *bundleFile) Replace(data []byte) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := "." + configName + ".sockreap-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(b.dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", b.path, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	done := false
	defer func() {
		if !done {
			f.Close()
			_ = unix.Unlinkat(b.dir, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", b.path, err)
	}
	if err := unix.Fchmod(fd, b.st.Mode&0o7777); err != nil {
		return fmt.Errorf("write %s: keep mode: %w", b.path, err)
	}
	if err := unix.Fchown(fd, int(b.st.Uid), int(b.st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("write %s: keep owner: %w", b.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", b.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", b.path, err)
	}
	done = true
	if err := unix.Renameat(b.dir, tmp, b.dir, configName); err != nil {
		_ = unix.Unlinkat(b.dir, tmp, 0)
		return fmt.Errorf("replace %s: %w", b.path, err)
	}
	return nil
}

// Close releases the bundle directory.
func (b *bundleFile) Close() { unix.Close(b.dir) }
