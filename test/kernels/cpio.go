package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"strings"
)

// archive is an in-memory initramfs: path (without leading /) -> entry.
type archive map[string]entry

type entry struct {
	mode uint32 // type bits | permissions
	data []byte // file contents or symlink target
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
)

func (a archive) dir(p string) {
	p = strings.Trim(p, "/")
	for q := p; q != "." && q != ""; q = parent(q) {
		if _, ok := a[q]; !ok {
			a[q] = entry{mode: modeDir | 0o755}
		}
	}
}

func (a archive) file(p string, perm uint32, data []byte) {
	p = strings.Trim(p, "/")
	a.dir(parent(p))
	a[p] = entry{mode: modeFile | perm, data: data}
}

func (a archive) symlink(p, target string) {
	p = strings.Trim(p, "/")
	a.dir(parent(p))
	a[p] = entry{mode: modeLink | 0o777, data: []byte(target)}
}

func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// writeTo writes the archive as a gzip-compressed newc cpio, parents before
// children (sorted paths), as the kernel's initramfs unpacker expects.
func (a archive) writeTo(w io.Writer) error {
	zw := gzip.NewWriter(w)
	paths := make([]string, 0, len(a))
	for p := range a {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	ino := uint32(1)
	for _, p := range paths {
		e := a[p]
		if err := writeEntry(zw, ino, p, e.mode, e.data); err != nil {
			return err
		}
		ino++
	}
	if err := writeEntry(zw, 0, "TRAILER!!!", 0, nil); err != nil {
		return err
	}
	return zw.Close()
}

func writeEntry(w io.Writer, ino uint32, name string, mode uint32, data []byte) error {
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	_, err := w.Write(buf)
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
