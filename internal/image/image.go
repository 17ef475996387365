// Package image builds sockreap's container image without a container
// engine or registry: one layer with the static binaries in /usr/local/bin
// and a static busybox (the installer's shell steps), written as a
// docker-save archive that `docker load` and `ctr images import` both read.
// go-containerregistry writes the archive.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultRef is the reference deploy/kubernetes names.
const DefaultRef = "sockreap/sockreap:local"

// applets are the busybox commands the installer's script uses.
var applets = []string{"sh", "cp", "mv", "rm", "mkdir", "chmod", "cat", "test", "sleep", "ls", "echo"}

// Build writes the image ref with the binaries bins (sockreap-* files) and
// busybox ("" looks it up on PATH) as a docker-save archive at out.
func Build(out, ref, busybox string, bins []string) error {
	if len(bins) == 0 {
		return fmt.Errorf("name the binaries to put in /usr/local/bin (make build makes them)")
	}
	tagged, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("tag %q: %w", ref, err)
	}
	if busybox == "" {
		if busybox, err = exec.LookPath("busybox"); err != nil {
			return fmt.Errorf("busybox not found: install busybox-static (make deps) or pass -busybox")
		}
	}
	rootfs, err := rootfs(busybox, bins)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rootfs)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cf.Config.Env = []string{"PATH=/usr/local/bin:/bin"}
	cf.Config.Entrypoint = []string{"/usr/local/bin/sockreap-nri"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "sockreap"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tagged, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	return nil
}

// rootfs is the layer: /usr/local/bin with the binaries, /bin with busybox
// and its applets, and the empty directories a container expects.
func rootfs(busybox string, bins []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dir := func(n string) error {
		return tw.WriteHeader(&tar.Header{Name: n + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch})
	}
	file := func(n, src string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "run", "var", "var/log", "usr", "usr/local", "usr/local/bin"} {
		if err := dir(d); err != nil {
			return nil, err
		}
	}
	if err := file("bin/busybox", busybox); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, b := range bins {
		base := filepath.Base(b)
		if !strings.HasPrefix(base, "sockreap-") {
			return nil, fmt.Errorf("%s: expected a sockreap-* binary", b)
		}
		if err := file("usr/local/bin/"+base, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
