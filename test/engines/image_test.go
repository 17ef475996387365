package engines

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/image"
	"github.com/sockreap/sockreap/internal/testbin"
)

// TestImageLoadsInDocker: the archive `make image` writes loads with
// `docker load` and its binaries run (the CRI suite imports it with ctr and
// runs the DaemonSets from it).
func TestImageLoadsInDocker(t *testing.T) {
	d := startDockerd(t, map[string]any{})
	archive := filepath.Join(d.dir, "sockreap-image.tar")
	bins := []string{hookBin(), shimBin(), testbin.Path("sockreap-nri")}
	if err := image.Build(archive, image.DefaultRef, "", bins); err != nil {
		t.Fatal(err)
	}
	if out := d.docker(t, "load", "-i", archive); !strings.Contains(out, image.DefaultRef) {
		t.Fatalf("docker load: %s", out)
	}
	if out := d.docker(t, "run", "--rm", "--network", "none", image.DefaultRef, "-h"); !strings.Contains(out, "-socket") {
		t.Errorf("sockreap-nri -h in the image: %s", out)
	}
	if out := d.docker(t, "run", "--rm", "--network", "none", "--entrypoint", "/usr/local/bin/sockreap-hook", image.DefaultRef, "version"); out == "" {
		t.Error("sockreap-hook version in the image printed nothing")
	}
	if out := d.docker(t, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image.DefaultRef, "-c", "ls /usr/local/bin"); !strings.Contains(out, "sockreap-shim") {
		t.Errorf("the installer's shell sees %q in /usr/local/bin", out)
	}
}
