// Package image builds container images without a container engine or
// registry, written as docker-save archives that `docker load` and `ctr
// images import` both read: sockreap's own image (Build: the static
// binaries in /usr/local/bin and a static busybox for the installer's shell
// steps) and the small busybox images the test rigs run (Write, Layer).
// go-containerregistry writes the archive.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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

// RootDirs are the empty directories a container expects.
var RootDirs = []string{"bin", "dev", "etc", "proc", "sys", "tmp", "run", "var", "var/log"}

// Build writes the image ref with the binaries bins (sockreap-* files) and
// busybox ("" looks it up on PATH) as a docker-save archive at out.
func Build(out, ref, busybox string, bins []string) error {
	if len(bins) == 0 {
		return fmt.Errorf("name the binaries to put in /usr/local/bin (make build makes them)")
	}
	if _, err := name.NewTag(ref); err != nil {
		return fmt.Errorf("tag %q: %w", ref, err)
	}
	if busybox == "" {
		var err error
		if busybox, err = exec.LookPath("busybox"); err != nil {
			return fmt.Errorf("busybox not found: install busybox-static (make deps) or pass -busybox")
		}
	}
	files := map[string][]byte{}
	for _, b := range bins {
		base := filepath.Base(b)
		if !strings.HasPrefix(base, "sockreap-") {
			return fmt.Errorf("%s: expected a sockreap-* binary", b)
		}
		content, err := os.ReadFile(b)
		if err != nil {
			return err
		}
		files["usr/local/bin/"+base] = content
	}
	rootfs, err := Layer{
		Dirs:    append(slices.Clone(RootDirs), "usr", "usr/local", "usr/local/bin"),
		Busybox: busybox,
		Applets: applets,
		Files:   files,
	}.Tar()
	if err != nil {
		return err
	}
	return Write(out, Image{
		Ref:        ref,
		Layers:     [][]byte{rootfs},
		Env:        []string{"PATH=/usr/local/bin:/bin"},
		Entrypoint: []string{"/usr/local/bin/sockreap-nri"},
		Labels:     map[string]string{"org.opencontainers.image.title": "sockreap"},
	})
}

// Image is one image of an archive: its layers (uncompressed tars, base
// first) and the configuration a container of it starts with.
type Image struct {
	Ref                  string
	Layers               [][]byte
	Env, Entrypoint, Cmd []string
	Labels               map[string]string
}

// Write writes images as one docker-save archive at out, through a
// temporary file so that out is whole or absent. Layers the images share
// are stored once.
func Write(out string, images ...Image) error {
	refs := map[name.Reference]v1.Image{}
	for _, im := range images {
		img, err := im.build()
		if err != nil {
			return err
		}
		refs[img.tag] = img.img
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

type built struct {
	tag name.Tag
	img v1.Image
}

func (im Image) build() (built, error) {
	tagged, err := name.NewTag(im.Ref)
	if err != nil {
		return built{}, fmt.Errorf("tag %q: %w", im.Ref, err)
	}
	img := empty.Image
	for _, l := range im.Layers {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil })
		if err != nil {
			return built{}, err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return built{}, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return built{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cf.Config.Env = im.Env
	cf.Config.Entrypoint = im.Entrypoint
	cf.Config.Cmd = im.Cmd
	cf.Config.Labels = im.Labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return built{}, err
	}
	return built{tagged, img}, nil
}

// Layer is the content of one layer.
type Layer struct {
	Dirs []string // empty directories, parents first
	// Busybox is the path of a static busybox to store as /bin/busybox
	// ("" none), with Applets linked to it in /bin (nil: every applet
	// `busybox --list` names).
	Busybox string
	Applets []string
	Files   map[string][]byte // path in the image: content, mode 0755
}

// Tar is the layer as an uncompressed tar, reproducible (sorted, epoch
// times).
func (l Layer) Tar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	file := func(n string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range l.Dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if l.Busybox != "" {
		bin, err := os.ReadFile(l.Busybox)
		if err != nil {
			return nil, err
		}
		if err := file("bin/busybox", bin); err != nil {
			return nil, err
		}
		names := l.Applets
		if names == nil {
			list, err := exec.Command(l.Busybox, "--list").Output()
			if err != nil {
				return nil, fmt.Errorf("%s --list: %w", l.Busybox, err)
			}
			names = strings.Fields(string(list))
		}
		for _, a := range names {
			if a == "busybox" {
				continue
			}
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(l.Files)) {
		if err := file(strings.TrimPrefix(n, "/"), l.Files[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
