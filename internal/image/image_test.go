package image

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestBuildWritesALoadableArchive(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox-static (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sockreap-nri")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	if err := Build(out, DefaultRef, bb, []string{bin}); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(DefaultRef)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read the archive back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/sockreap-nri" {
		t.Errorf("config: os %q entrypoint %v", cf.OS, cf.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	seen := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = true
	}
	for _, want := range []string{"usr/local/bin/sockreap-nri", "bin/busybox", "bin/sh", "bin/sleep"} {
		if !seen[want] {
			t.Errorf("layer lacks %s", want)
		}
	}
	if err := Build(out, DefaultRef, bb, []string{"/bin/true"}); err == nil {
		t.Error("Build accepted a binary that is not sockreap's")
	}
}

func TestWriteStoresImagesSharingALayer(t *testing.T) {
	dir := t.TempDir()
	base, err := Layer{Dirs: RootDirs, Files: map[string][]byte{"/bin/x": []byte("x")}}.Tar()
	if err != nil {
		t.Fatal(err)
	}
	extra, err := Layer{Files: map[string][]byte{"/y": []byte("y")}}.Tar()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "imgs.tar")
	if err := Write(out,
		Image{Ref: "test/a:1", Layers: [][]byte{base}, Entrypoint: []string{"/bin/x"}},
		Image{Ref: "test/b:1", Layers: [][]byte{base, extra}, Cmd: []string{"/y"}},
	); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]int{"test/a:1": 1, "test/b:1": 2} {
		tag, _ := name.NewTag(ref)
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatalf("read %s back: %v", ref, err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != want {
			t.Errorf("%s: %d layers (%v), want %d", ref, len(layers), err, want)
		}
	}
	if err := Write(out, Image{Ref: "Not A Ref"}); err == nil {
		t.Error("Write accepted a malformed reference")
	}
}
