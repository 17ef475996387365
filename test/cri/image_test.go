package cri

import (
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
)

// The images the rig makes from busybox-static and imports with ctr are
// what the CRI runs: pods get the pause image as their sandbox, and app
// containers a busybox with its applets.
func TestImages(t *testing.T) {
	need(t)
	for _, e := range []*critest.Engine{critest.Containerd16, critest.Containerd22} {
		t.Run(e.Name, func(t *testing.T) {
			d := startDaemon(t, e)
			images := d.Crictl(t, "images")
			for _, ref := range []string{critest.PauseImage, critest.AppImage} {
				name, tag, _ := strings.Cut(ref, ":")
				if !strings.Contains(images, name) || !strings.Contains(images, tag) {
					t.Errorf("crictl images does not list %s:\n%s", ref, images)
				}
			}
			p := d.RunPod(t, critest.PodSpec{PID: critest.NamespaceContainer})
			// The runtime's start returns before its init process has
			// exec'd the image's command (comm "runc:[2:INIT]" meanwhile).
			comm := ""
			if waitFor(30*time.Second, func() bool { comm = readFile("/proc/" + itoa(p.PausePID) + "/comm"); return comm == "sleep" }) < 0 {
				t.Errorf("the pod's sandbox process is %q, want the pause image's sleep", comm)
			}
			p.Start(t, "app", "/bin/sh", "-c", "echo hello from $(busybox | head -1 | cut -d' ' -f1-2)")
			if waitFor(30*time.Second, func() bool { return strings.Contains(p.Log("app"), "hello from BusyBox") }) < 0 {
				t.Errorf("app container log: %q, want its busybox greeting", p.Log("app"))
			}
			p.Stop(t)
			p.Remove(t)
		})
	}
}
