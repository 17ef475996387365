package kubepod

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const manifests = "../../deploy/kubernetes/"

func TestNRIDaemonSetToCRI(t *testing.T) {
	ds, err := ReadDaemonSet(manifests+"sockreap-nri.yaml", "sockreap-nri")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ds.Container("sockreap-nri")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ds.ContainerConfig(c, HostDirs{
		HostPath: func(p string) string { return "/test" + p },
		EmptyDir: func(v string) string { return "/empty/" + v },
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	got := string(b)
	for _, want := range []string{
		`"image":{"image":"sockreap/sockreap:local"}`,
		`"add_capabilities":["SYS_ADMIN","NET_ADMIN","SYS_PTRACE"]`,
		`"drop_capabilities":["ALL"]`,
		`"container_path":"/var/run/netns","host_path":"/test/var/run/netns","propagation":1,"readonly":true`,
		`"container_path":"/var/run/nri","host_path":"/test/var/run/nri"`,
		`"host_path":"/empty/state"`,
		`"namespace_options":{"network":2,"pid":2}`,
		`"apparmor":{"localhost_ref":"","profile_type":1}`,
		`"no_new_privs":true`,
		`"readonly_rootfs":true`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("container config lacks %s:\n%s", want, got)
		}
	}
	pod, _ := json.Marshal(ds.PodConfig("n", "kube-system", "u", "/logs"))
	if !strings.Contains(string(pod), `"namespace_options":{"network":2,"pid":2}`) {
		t.Errorf("pod config: %s", pod)
	}
}

func TestInstallerDaemonSet(t *testing.T) {
	ds, err := ReadDaemonSet(manifests+"sockreap-installer.yaml", "sockreap-installer")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ds.Container("install")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AddedCapabilities()) != 0 {
		t.Errorf("the installer adds capabilities %v; it needs none", c.AddedCapabilities())
	}
	cfg, err := ds.ContainerConfig(c, HostDirs{HostPath: func(p string) string { return p }})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	if !strings.Contains(string(b), `"namespace_options":{"network":0,"pid":1}`) {
		t.Errorf("installer namespaces: %s", b)
	}
}

func TestUnknownFieldsAreErrors(t *testing.T) {
	b, err := os.ReadFile(manifests + "sockreap-nri.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "      hostPID: true", "      hostPID: true\n      hostIPC: true", 1)
	path := filepath.Join(t.TempDir(), "ds.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDaemonSet(path, "sockreap-nri"); err == nil || !strings.Contains(err.Error(), "hostIPC") {
		t.Errorf("hostIPC accepted or not named: %v", err)
	}
	if _, err := ReadDaemonSet(manifests+"sockreap-nri.yaml", "nope"); err == nil {
		t.Error("a missing DaemonSet was found")
	}
}
