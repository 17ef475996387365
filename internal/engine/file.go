// Package engine edits the configuration of container engines (Docker,
// containerd, CRI-O, podman/CRI-O hooks.d) so that they run sockreap. Every
// edit decodes the existing file into generic maps, sets only the keys
// sockreap owns and writes the rest back unchanged; the caller backs the
// old file up and writes the new one atomically with Apply.
package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sockreap/sockreap/internal/atomicfile"
)

// Edit is the planned new content of one file.
type Edit struct {
	Path    string
	Old     []byte // nil when the file does not exist
	New     []byte
	Exists  bool
	Delete  bool     // remove the file (a file that is sockreap's own)
	Removal bool     // the edit undoes sockreap's configuration
	Notes   []string // things the operator should know, one line each
}

// Changed reports whether writing the edit would change the file.
func (e *Edit) Changed() bool {
	if e.Delete {
		return e.Exists
	}
	return !e.Exists || !bytes.Equal(e.Old, e.New)
}

// ReadFile returns the content of path, or nil and exists=false when it is
// missing. Any other error names the file.
func ReadFile(path string) (data []byte, exists bool, err error) {
	data, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	return data, true, nil
}

// Apply writes (or, for a Delete, removes) the file when the edit changes it: the old file is first
// copied to a timestamped backup next to it (returned), then the new
// content replaces it atomically with the old file's mode. An unchanged
// edit writes nothing and returns "".
func Apply(e *Edit) (backup string, err error) {
	if !e.Changed() {
		return "", nil
	}
	mode := fs.FileMode(0o644)
	path := e.Path
	if e.Exists {
		// Write through a symlink (config management often links the
		// file) instead of replacing the link with a plain file.
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
		backup = path + ".sockreap-bak." + time.Now().UTC().Format("20060102T150405.000000000Z")
		if err := atomicfile.Write(backup, e.Old, mode); err != nil {
			return "", fmt.Errorf("back up %s: %w", e.Path, err)
		}
		if e.Delete {
			if err := os.Remove(path); err != nil {
				return backup, fmt.Errorf("remove %s: %w", e.Path, err)
			}
			return backup, nil
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("create directory for %s: %w", path, err)
	}
	if err := atomicfile.Write(path, e.New, mode); err != nil {
		return backup, err
	}
	return backup, nil
}
