package oci

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsKind is what a namespace path in config.json turns out to be.
type NetnsKind int

const (
	// NetnsGone: nothing is there (any more), or it cannot be looked at.
	NetnsGone NetnsKind = iota
	// NetnsProc: the path leads into procfs (/proc/PID/ns/net,
	// /proc/PID/task/TID/ns/net, through symlinks or another procfs
	// mount). It names a process, not a namespace: after the container
	// stopped the pid may be anybody's, so it is never trusted.
	NetnsProc
	// NetnsNsfs: a network namespace file outside procfs, a bind mount
	// that keeps the namespace itself (/var/run/netns/NAME, a pin).
	NetnsNsfs
	// NetnsOther: something else (a plain file left where a mount was,
	// another kind of namespace).
	NetnsOther
)

func (k NetnsKind) String() string {
	switch k {
	case NetnsGone:
		return "gone"
	case NetnsProc:
		return "proc"
	case NetnsNsfs:
		return "nsfs"
	}
	return "other"
}

// NetnsPath is a classified namespace path.
type NetnsPath struct {
	Kind NetnsKind
	// Resolved is the path with every symlink resolved (up to a procfs
	// entry, whose links are not followed): open this one, not the
	// original, so that a link changed meanwhile cannot redirect.
	Resolved string
}

// maxLinks bounds symlink resolution, as the kernel's 40.
const maxLinks = 40

// ClassifyNetnsPath resolves path and tells what it is. A path is judged
// by where it leads, never by its spelling: a symlink elsewhere pointing
// into /proc is NetnsProc.
func ClassifyNetnsPath(path string) NetnsPath {
	resolved, inProc, err := resolve(path)
	if err != nil {
		return NetnsPath{Kind: NetnsGone, Resolved: resolved}
	}
	if inProc {
		return NetnsPath{Kind: NetnsProc, Resolved: resolved}
	}
	var st unix.Stat_t
	if err := unix.Stat(resolved, &st); err != nil {
		return NetnsPath{Kind: NetnsGone, Resolved: resolved}
	}
	fd, err := unix.Open(resolved, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return NetnsPath{Kind: NetnsOther, Resolved: resolved}
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) != nil || sfs.Type != unix.NSFS_MAGIC {
		return NetnsPath{Kind: NetnsOther, Resolved: resolved}
	}
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err == nil && t != unix.CLONE_NEWNET {
		return NetnsPath{Kind: NetnsOther, Resolved: resolved}
	}
	return NetnsPath{Kind: NetnsNsfs, Resolved: resolved}
}

// resolve follows the symlinks of path one element at a time. It stops,
// with inProc, at the first element that is /proc or lies on a procfs
// mount, where links are magic and must not be followed.
func resolve(path string) (resolved string, inProc bool, err error) {
	if !filepath.IsAbs(path) {
		return path, false, errors.New("not an absolute path")
	}
	rest := strings.Split(filepath.Clean(path), "/")[1:]
	cur := "/"
	for links := 0; len(rest) > 0; {
		elem := rest[0]
		rest = rest[1:]
		if elem == "" || elem == "." {
			continue
		}
		if elem == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, elem)
		if isProcfs(next) {
			return filepath.Join(append([]string{next}, rest...)...), true, nil
		}
		fi, err := os.Lstat(next)
		if err != nil {
			return filepath.Join(append([]string{next}, rest...)...), false, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return next, false, unix.ELOOP
		}
		target, err := os.Readlink(next)
		if err != nil {
			return next, false, err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, false, nil
}

// isProcfs reports whether path is /proc or lies on a procfs mount.
func isProcfs(path string) bool {
	if path == "/proc" || strings.HasPrefix(path, "/proc/") {
		return true
	}
	var sfs unix.Statfs_t
	return unix.Statfs(path, &sfs) == nil && sfs.Type == unix.PROC_SUPER_MAGIC
}
