// Package atomicfile replaces files so that a reader sees the old content
// or the new one, never half of either: the data goes to a temporary file
// in the same directory, is synced, and is renamed over the target.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces (or creates) path with data and the given mode.
func Write(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, nil, true)
}

// WriteVolatile is Write without the syncs, for state that does not
// outlive a reboot anyway (pin metadata: the pins are mounts; the probe
// cache of this boot). Readers still see the old content or the new one;
// only a crash may lose the file. A sync costs milliseconds on a disk, on
// the path of every container start.
func WriteVolatile(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, nil, false)
}

// Replace replaces the existing file path with data, keeping its mode and,
// where the caller may set it, its owner.
func Replace(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	return write(path, data, fi.Mode().Perm(), st, true)
}

func write(path string, data []byte, mode fs.FileMode, owner *syscall.Stat_t, durable bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if owner != nil {
		if err := tmp.Chown(int(owner.Uid), int(owner.Gid)); err != nil && !errors.Is(err, os.ErrPermission) {
			tmp.Close()
			return fmt.Errorf("write %s: keep owner: %w", path, err)
		}
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("sync %s: %w", name, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
