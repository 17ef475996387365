package engine

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Commit prints what the edits do and, unless dryRun, applies them. With
// dryRun the new content of each changed file goes to w and nothing is
// written.
func Commit(w io.Writer, edits []*Edit, dryRun bool) (changed bool, err error) {
	for _, e := range edits {
		if !e.Changed() {
			if e.Removal {
				fmt.Fprintf(w, "%s: nothing of sockreap's there, not changed\n", e.Path)
			} else {
				fmt.Fprintf(w, "%s: already configured, not changed\n", e.Path)
			}
			continue
		}
		changed = true
		if dryRun && e.Delete {
			fmt.Fprintf(w, "# %s (dry run): would be removed\n", e.Path)
			continue
		}
		if dryRun {
			fmt.Fprintf(w, "# %s (dry run, not written):\n%s", e.Path, e.New)
			if len(e.New) > 0 && e.New[len(e.New)-1] != '\n' {
				fmt.Fprintln(w)
			}
			continue
		}
		backup, err := Apply(e)
		if err != nil {
			return changed, err
		}
		if e.Delete {
			fmt.Fprintf(w, "%s: removed (backup: %s)\n", e.Path, backup)
		} else if backup != "" {
			fmt.Fprintf(w, "%s: written (backup: %s)\n", e.Path, backup)
		} else {
			fmt.Fprintf(w, "%s: created\n", e.Path)
		}
	}
	for _, e := range edits {
		for _, n := range e.Notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	return changed, nil
}

// Executable checks that path is an absolute path to an executable file,
// the form engine configs need.
func Executable(path, flag string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s must be an absolute path, got %q", flag, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w; install it first (make install) or pass %s PATH", flag, path, err, flag)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s %s is not an executable file", flag, path)
	}
	return nil
}

// Sibling returns the absolute path of name next to the running
// executable (sockreap-hook and sockreap-shim are installed together).
func Sibling(name string) string {
	self, err := os.Executable()
	if err != nil {
		return "/usr/local/bin/" + name
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	return filepath.Join(filepath.Dir(self), name)
}
