package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Kernel is one Debian kernel of the matrix.
type Kernel struct {
	Name  string // short name in the table, e.g. "5.10"
	Suite string // Debian suite whose cloud-amd64 kernel it is

	Package string // resolved linux-image package, e.g. linux-image-5.10.0-32-cloud-amd64
	Version string // package version
	Release string // uname -r of the kernel
	Vmlinuz string // path of the extracted kernel image
	Modules string // path of the extracted /lib/modules/<release>
}

// matrix is the kernels the suite boots: the cloud-amd64 kernel each
// release ships in its main suite (what a machine installed from the point
// release runs).
func matrix() []*Kernel {
	return []*Kernel{
		{Name: "5.10", Suite: "bullseye"},
		{Name: "6.1", Suite: "bookworm"},
		{Name: "6.12", Suite: "trixie"},
	}
}

// apt drives apt-get/apt-cache against a private configuration under dir:
// its own sources list, lists and package cache, so the machine's apt
// sources and state stay untouched.
type apt struct {
	dir    string
	mirror string
	suite  string
}

func (a *apt) opts() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Dir::State::Status=/dev/null",
		"-o", "Debug::NoLocking=1",
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"-o", "APT::Get::List-Cleanup=0",
	}
}

func (a *apt) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, append(a.opts(), args...)...)
	cmd.Dir = a.dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return string(out), nil
}

// listsMaxAge is how long downloaded package lists are trusted before
// apt-get update runs again.
const listsMaxAge = 24 * time.Hour

// update refreshes the private package lists when they are missing or old.
// If the refresh fails but old lists exist, it goes on with those.
func (a *apt) update() error {
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	src := fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", a.mirror, a.suite)
	srcPath := filepath.Join(a.dir, "sources.list")
	old, _ := os.ReadFile(srcPath)
	stamp := filepath.Join(a.dir, "lists", ".updated")
	if st, err := os.Stat(stamp); err == nil && string(old) == src && time.Since(st.ModTime()) < listsMaxAge {
		return nil
	}
	if err := os.WriteFile(srcPath, []byte(src), 0o644); err != nil {
		return err
	}
	if _, err := a.run("apt-get", "update"); err != nil {
		if _, serr := os.Stat(stamp); serr == nil && string(old) == src {
			logf("apt-get update for %s failed, using the lists from %s: %v", a.suite, stamp, err)
			return nil
		}
		return err
	}
	return os.WriteFile(stamp, nil, 0o644)
}

var dependsImage = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[^\s]+-cloud-amd64)\s*$`)

// fetch resolves, downloads (once) and extracts (once) k's kernel package
// under cache and fills in k's paths.
func fetch(cache, mirror string, k *Kernel) error {
	a := &apt{dir: filepath.Join(cache, "apt-"+k.Suite), mirror: mirror, suite: k.Suite}
	if err := a.update(); err != nil {
		return fmt.Errorf("package lists for %s: %w", k.Suite, err)
	}
	out, err := a.run("apt-cache", "depends", "linux-image-cloud-amd64")
	if err != nil {
		return err
	}
	m := dependsImage.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("%s: linux-image-cloud-amd64 depends on no linux-image-*-cloud-amd64:\n%s", k.Suite, out)
	}
	k.Package = m[1]
	out, err = a.run("apt-cache", "show", "--no-all-versions", k.Package)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			k.Version = strings.TrimSpace(v)
		}
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	// apt-get download names the file pkg_version_arch.deb with ':' escaped.
	deb := filepath.Join(debs, fmt.Sprintf("%s_%s_amd64.deb", k.Package, strings.ReplaceAll(k.Version, ":", "%3a")))
	if _, err := os.Stat(deb); err != nil {
		start := time.Now()
		logf("downloading %s %s", k.Package, k.Version)
		cmd := exec.Command("apt-get", append(a.opts(), "download", k.Package+"="+k.Version)...)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s: %w\n%s", k.Package, err, tail(string(out), 2000))
		}
		if _, err := os.Stat(deb); err != nil {
			return fmt.Errorf("apt-get download %s left no %s", k.Package, deb)
		}
		logf("downloaded %s in %s", filepath.Base(deb), time.Since(start).Round(time.Second))
	}
	root := filepath.Join(cache, "root", k.Package+"_"+k.Version)
	if _, err := os.Stat(filepath.Join(root, ".extracted")); err != nil {
		_ = os.RemoveAll(root)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
		}
		if err := os.WriteFile(filepath.Join(root, ".extracted"), nil, 0o644); err != nil {
			return err
		}
	}
	return locate(root, k)
}

// locate finds the kernel image and module tree in an extracted package
// (lib/ or, on merged-/usr packages, usr/lib/).
func locate(root string, k *Kernel) error {
	imgs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(imgs) != 1 {
		return fmt.Errorf("%s: want one boot/vmlinuz-*, found %v", root, imgs)
	}
	k.Vmlinuz = imgs[0]
	k.Release = strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(root, d, k.Release)
		// Packages ship no modules.dep (depmod runs at install time);
		// modules.go reads dependencies from each module instead.
		if _, err := os.Stat(filepath.Join(p, "modules.order")); err == nil {
			k.Modules = p
			return nil
		}
	}
	return fmt.Errorf("%s: no modules for %s", root, k.Release)
}

// debianMirror is the Debian mirror the machine's own apt sources use, so
// the private cache fetches from wherever this machine is allowed to.
func debianMirror() string {
	const fallback = "http://deb.debian.org/debian"
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			for i, w := range fields {
				if (w == "URIs:" || (i > 0 && fields[0] == "deb")) && i+1 < len(fields) {
					for _, u := range fields[i+1:] {
						if strings.HasPrefix(u, "http") && strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
							fh.Close()
							return strings.TrimSuffix(u, "/")
						}
					}
				}
			}
		}
		fh.Close()
	}
	return fallback
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
