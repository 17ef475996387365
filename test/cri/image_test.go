package cri

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sockreap/sockreap/internal/critest"
)

// The images the rig makes from busybox-static and imports with ctr are
// what the CRI runs: pods get the pause image as their sandbox, app
// containers a busybox with its applets, and an image with a layer added
// runs the added file.
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
			app := p.Start(t, "app", "/bin/sh", "-c", "echo hello from $(busybox | head -1 | cut -d' ' -f1-2)")
			if waitFor(30*time.Second, func() bool { return strings.Contains(p.Log("app"), "hello from BusyBox") }) < 0 {
				t.Errorf("app container log: %q, want its busybox greeting", p.Log("app"))
			}
			// Stopped while its task is being deleted, a container that
			// just exited fails the pod's stop in containerd 1.6 ("failed
			// to kill container: ttrpc: closed"); once it is EXITED, the
			// stop leaves it alone.
			state := ""
			if waitFor(30*time.Second, func() bool { state = containerState(t, d, app); return state == "CONTAINER_EXITED" }) < 0 {
				t.Errorf("app container %s is %s, want it exited after its echo", app, state)
			}
			// An image of the app image's layer and one more
			// (Daemon.ImportImage): the added file runs on the busybox
			// of the layer below.
			const extraRef = "docker.io/sockreap-test/extra:1"
			d.ImportImage(t, extraRef, map[string][]byte{"/hello": []byte("#!/bin/sh\necho hello from the added layer\n")})
			extra := p.StartImage(t, "extra", extraRef, "/hello")
			if waitFor(30*time.Second, func() bool { return strings.Contains(p.Log("extra"), "hello from the added layer") }) < 0 {
				t.Errorf("extra container log: %q, want the added file's greeting", p.Log("extra"))
			}
			if waitFor(30*time.Second, func() bool { state = containerState(t, d, extra); return state == "CONTAINER_EXITED" }) < 0 {
				t.Errorf("extra container %s is %s, want it exited after its echo", extra, state)
			}
			p.Stop(t)
			p.Remove(t)
		})
	}
}

// containerState is the CRI state of container id (CONTAINER_RUNNING,
// CONTAINER_EXITED, ...).
func containerState(t *testing.T, d *critest.Daemon, id string) string {
	t.Helper()
	var st struct{ Status struct{ State string } }
	if err := json.Unmarshal([]byte(d.Crictl(t, "inspect", "-o", "json", id)), &st); err != nil {
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	return st.Status.State
}
