package critest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
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
// image: content, mode 0755) added to it.
func (d *Daemon) ImportImage(t T, ref string, files map[string][]byte) {
	t.Helper()
	archive := filepath.Join(d.Dir, "image-"+sha256hex([]byte(ref))[:12]+".tar")
	if err := writeArchive(archive, []image{{ref: ref, cmd: []string{"/bin/sh"}, extra: files}}); err != nil {
		t.Fatalf("build image %s: %v", ref, err)
	}
	must(t, "ctr", "--address", d.Sock, "--namespace", "k8s.io", "images", "import", archive)
}

type image struct {
	ref             string
	entrypoint, cmd []string
	extra           map[string][]byte
}

// writeImages writes a docker-save archive holding the pause and the app
// image: a layer with a static busybox and its applets, the pause image
// sleeping forever, the app image a shell.
func writeImages(path string) error {
	return writeArchive(path, []image{
		{ref: PauseImage, entrypoint: []string{"/bin/sleep", "2147483647"}},
		{ref: AppImage, cmd: []string{"/bin/sh"}},
	})
}

// writeArchive writes a docker-save archive of images: the busybox layer,
// then for an image with extra files a layer of those.
func writeArchive(path string, images []image) error {
	base, err := busyboxLayer()
	if err != nil {
		return err
	}
	var manifest []map[string]any
	files := map[string][]byte{}
	for _, img := range images {
		layers := [][]byte{base}
		if len(img.extra) > 0 {
			extra, err := filesLayer(img.extra)
			if err != nil {
				return err
			}
			layers = append(layers, extra)
		}
		var diffIDs, layerPaths []string
		for _, l := range layers {
			digest := sha256hex(l)
			files[digest+"/layer.tar"] = l
			diffIDs = append(diffIDs, "sha256:"+digest)
			layerPaths = append(layerPaths, digest+"/layer.tar")
		}
		config, err := json.Marshal(map[string]any{
			"architecture": runtime.GOARCH, "os": "linux",
			"created": time.Unix(0, 0).UTC().Format(time.RFC3339),
			"config":  map[string]any{"Env": []string{"PATH=/bin"}, "Entrypoint": img.entrypoint, "Cmd": img.cmd},
			"rootfs":  map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		if err != nil {
			return err
		}
		name := sha256hex(config) + ".json"
		files[name] = config
		manifest = append(manifest, map[string]any{"Config": name, "RepoTags": []string{img.ref}, "Layers": layerPaths})
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	files["manifest.json"] = m
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range sortedKeys(files) {
		if strings.Contains(name, "/") {
			if err := tw.WriteHeader(&tar.Header{Name: filepath.Dir(name) + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		if err := writeFile(tw, name, files[name], 0o644); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// busyboxLayer is a root filesystem tar: the static busybox as /bin/busybox
// and every applet it has linked to it.
func busyboxLayer() ([]byte, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("needs busybox-static: %w", err)
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		return nil, err
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bb, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "var", "run"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := writeFile(tw, "bin/busybox", bin, 0o755); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// filesLayer is a layer tar of files (path: content), executable.
func filesLayer(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range sortedKeys(files) {
		if err := writeFile(tw, strings.TrimPrefix(name, "/"), files[name], 0o755); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, b []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a reproducible archive
	return keys
}
