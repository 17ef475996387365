package critest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"

	srimage "github.com/sockreap/sockreap/internal/image"
)

// importImages imports the pause and app images into the daemon's k8s.io
// namespace, where its CRI finds them (nothing is pulled: no registry is
// reachable).
func (d *Daemon) importImages(t T) {
	t.Helper()
	archive := filepath.Join(d.Dir, "images.tar")
	if err := writeImages(archive); err != nil {
		t.Fatalf("build the test images: %v", err)
	}
	must(t, "ctr", "--address", d.Sock, "--namespace", "k8s.io", "images", "import", archive)
	for _, ref := range []string{PauseImage, AppImage} {
		if _, err := d.crictl("inspecti", ref); err != nil {
			t.Fatalf("the CRI does not list the imported %s: %v", ref, err)
		}
	}
}

// ImportImage imports, as ref, the app image with files (path in the
// image: content, mode 0755) added to it as a second layer.
func (d *Daemon) ImportImage(t T, ref string, files map[string][]byte) {
	t.Helper()
	sum := sha256.Sum256([]byte(ref))
	archive := filepath.Join(d.Dir, "image-"+hex.EncodeToString(sum[:])[:12]+".tar")
	err := func() error {
		base, err := busyboxLayer()
		if err != nil {
			return err
		}
		extra, err := srimage.Layer{Files: files}.Tar()
		if err != nil {
			return err
		}
		return srimage.Write(archive, srimage.Image{Ref: ref, Layers: [][]byte{base, extra}, Env: appEnv, Cmd: []string{"/bin/sh"}})
	}()
	if err != nil {
		t.Fatalf("build image %s: %v", ref, err)
	}
	must(t, "ctr", "--address", d.Sock, "--namespace", "k8s.io", "images", "import", archive)
}

var appEnv = []string{"PATH=/bin"}

// writeImages writes a docker-save archive holding the pause and the app
// image, both of one layer with a static busybox and its applets: the
// pause image sleeping forever, the app image a shell.
func writeImages(path string) error {
	base, err := busyboxLayer()
	if err != nil {
		return err
	}
	return srimage.Write(path,
		srimage.Image{Ref: PauseImage, Layers: [][]byte{base}, Env: appEnv, Entrypoint: []string{"/bin/sleep", "2147483647"}},
		srimage.Image{Ref: AppImage, Layers: [][]byte{base}, Env: appEnv, Cmd: []string{"/bin/sh"}},
	)
}

// busyboxLayer is a root filesystem: the static busybox as /bin/busybox
// and every applet it has linked to it.
func busyboxLayer() ([]byte, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("needs busybox-static: %w", err)
	}
	return srimage.Layer{Dirs: srimage.RootDirs, Busybox: bb}.Tar()
}
