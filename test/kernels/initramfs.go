package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Tools are the host files every initramfs carries.
type Tools struct {
	Guest   string // the static scenario runner, /init in the guest
	Hook    string // bin/sockreap-hook (static)
	Busybox string // busybox-static
}

// busyboxApplets are linked into /bin so the guest (and a debugging shell)
// has them; sysctl is used by the fixtures inside `ip netns exec`.
var busyboxApplets = []string{"sh", "mount", "umount", "sysctl", "cat", "ls", "dmesg", "sleep", "echo", "mkdir", "ps", "insmod", "lsmod"}

// hostBinaries are copied from the host with the shared libraries ldd
// names: iproute2's ip (namespaces, veths) and ss (the independent witness).
var hostBinaries = []string{"ip", "ss"}

// buildInitramfs writes k's initramfs to out.
func buildInitramfs(k *Kernel, tools Tools, out string) error {
	a := archive{}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc", "root", "var"} {
		a.dir(d)
	}
	a.symlink("var/run", "../run")
	if err := addHostFile(a, tools.Guest, "init", 0o755); err != nil {
		return err
	}
	if err := addHostFile(a, tools.Hook, "bin/sockreap-hook", 0o755); err != nil {
		return err
	}
	if err := addHostFile(a, tools.Busybox, "bin/busybox", 0o755); err != nil {
		return err
	}
	for _, app := range busyboxApplets {
		a.symlink("bin/"+app, "busybox")
	}
	for _, b := range hostBinaries {
		p, err := exec.LookPath(b)
		if err != nil {
			return fmt.Errorf("%s not found on the host (apt-get install iproute2): %w", b, err)
		}
		if err := addWithLibs(a, p, "bin/"+b); err != nil {
			return err
		}
	}
	// ip netns exec bind-mounts /etc/netns/NAME files when present; an
	// empty /etc is enough. ss resolves protocol names from /etc/protocols.
	if pr, err := os.ReadFile("/etc/protocols"); err == nil {
		a.file("etc/protocols", 0o644, pr)
	}
	tree, err := openModuleTree(k.Modules)
	if err != nil {
		return err
	}
	mods, err := resolveModules(tree, guestModules)
	if err != nil {
		return err
	}
	var order strings.Builder
	for i, m := range mods {
		name := fmt.Sprintf("modules/%02d-%s.ko", i, m.Name)
		a.file(name, 0o644, m.Data)
		order.WriteString(name + "\n")
	}
	a.file("modules/order", 0o644, []byte(order.String()))
	a.file("etc/sockreap-kernel", 0o644, []byte(fmt.Sprintf("%s %s %s\n", k.Name, k.Package, k.Version)))
	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

func addHostFile(a archive, src, dst string, perm uint32) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	a.file(dst, perm, data)
	return nil
}

var lddPath = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// addWithLibs copies a dynamically linked host binary and every library
// ldd lists (loader included) to the same paths in the archive.
func addWithLibs(a archive, src, dst string) error {
	if err := addHostFile(a, src, dst, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("ldd", src).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", src, err)
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		lib := m[1]
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return fmt.Errorf("library %s of %s: %w", lib, src, err)
		}
		if _, done := a[strings.TrimPrefix(lib, "/")]; done {
			continue
		}
		if err := addHostFile(a, real, lib, 0o755); err != nil {
			return err
		}
	}
	return nil
}
