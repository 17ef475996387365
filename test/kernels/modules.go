package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// guestModules are the modules the scenarios use, in the order the guest
// loads them (each after its dependencies). Those built into a kernel are
// simply absent from its tree and skipped.
var guestModules = []string{
	"ipv6", "veth",
	"inet_diag", "tcp_diag", "udp_diag", "raw_diag",
	"rds", "rds_tcp",
}

// Module is one kernel module ready for the initramfs.
type Module struct {
	Name string // normalised name (underscores)
	Data []byte // uncompressed .ko
}

// moduleTree indexes the .ko files of an extracted kernel package.
type moduleTree struct {
	dir   string
	paths map[string]string // normalised name -> path
}

func normalise(name string) string { return strings.ReplaceAll(name, "-", "_") }

func openModuleTree(dir string) (*moduleTree, error) {
	t := &moduleTree{dir: dir, paths: map[string]string{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if n, ok := strings.CutSuffix(base, ext); ok {
				t.paths[normalise(n)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	return t, nil
}

// read returns the uncompressed module (Debian 6.12 ships .ko.xz; the guest
// loads with init_module, which wants plain ELF).
func (t *moduleTree) read(name string) ([]byte, error) {
	p := t.paths[name]
	var tool string
	switch {
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".gz"):
		tool = "gzip"
	default:
		return os.ReadFile(p)
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w", tool, p, err)
	}
	return out, nil
}

// depends reads the "depends=" entry of a module's .modinfo section.
func depends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				deps = append(deps, normalise(d))
			}
			return deps, nil
		}
	}
	return nil, nil
}

// resolveModules returns the wanted modules that exist in the tree plus
// their dependencies, dependencies first.
func resolveModules(t *moduleTree, want []string) ([]Module, error) {
	var out []Module
	done := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if done[name] {
			return nil
		}
		if _, ok := t.paths[name]; !ok {
			if len(chain) > 0 {
				// A dependency missing from the tree is a broken package.
				return fmt.Errorf("module %s (needed by %s) not in %s", name, strings.Join(chain, " <- "), t.dir)
			}
			done[name] = true // built in, or not in this flavour
			return nil
		}
		done[name] = true
		ko, err := t.read(name)
		if err != nil {
			return err
		}
		deps, err := depends(ko)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		out = append(out, Module{Name: name, Data: ko})
		return nil
	}
	for _, w := range want {
		if err := visit(normalise(w), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
