package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(small, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadFile at the limit: %q, %v", b, err)
	}
	if _, err := ReadFile(small, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile above the limit: %v, want ErrTooLarge", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(link, 100); !errors.Is(err, ErrSymlink) {
		t.Errorf("ReadFile of a symlink: %v, want ErrSymlink", err)
	}
	if _, err := ReadFile(dir, 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("ReadFile of a directory: %v, want ErrNotRegular", err)
	}
	if _, err := Size(link); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Size of a symlink: %v", err)
	}
}

func TestOpenPrivate(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenPrivate(link); !errors.Is(err, ErrSymlink) {
		t.Errorf("OpenPrivate of a symlink: %v, want ErrSymlink", err)
		if f != nil {
			f.Close()
		}
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPrivate(open); !errors.Is(err, ErrUnsafe) {
		t.Errorf("OpenPrivate of a world-writable file: %v, want ErrUnsafe", err)
	}
	fresh := filepath.Join(dir, "fresh")
	f, err := OpenPrivate(fresh)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("created %v, %v; want mode 0600", fi.Mode(), err)
	}
}

func TestDirs(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "a", "state")
	if err := MkdirPrivate(state); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(state); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	if err := CheckDir(state); err != nil {
		t.Errorf("CheckDir of a private dir: %v", err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(state); !errors.Is(err, ErrUnsafe) {
		t.Errorf("CheckDir of a world-writable dir: %v, want ErrUnsafe", err)
	}
	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(state), 0o775); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(state); err != nil {
		t.Errorf("CheckDir under a group-writable parent: %v", err)
	}
	if err := os.Chmod(filepath.Dir(state), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(state); !errors.Is(err, ErrUnsafe) {
		t.Errorf("CheckDir under a world-writable parent: %v, want ErrUnsafe", err)
	}
	if err := os.Chmod(filepath.Dir(state), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(state); err != nil {
		t.Errorf("CheckDir under a sticky parent: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckOwnDir(link); !errors.Is(err, ErrSymlink) {
		t.Errorf("CheckOwnDir of a symlink: %v, want ErrSymlink", err)
	}
	if err := MkdirPrivate(link); !errors.Is(err, ErrSymlink) {
		t.Errorf("MkdirPrivate over a symlink: %v, want ErrSymlink", err)
	}
}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(f); err != nil {
		t.Errorf("CheckFile of a 0644 file: %v", err)
	}
	if err := os.Chmod(f, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(f); !errors.Is(err, ErrUnsafe) {
		t.Errorf("CheckFile of a world-writable file: %v, want ErrUnsafe", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(f, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(link); !errors.Is(err, ErrSymlink) {
		t.Errorf("CheckFile of a symlink: %v, want ErrSymlink", err)
	}
}
