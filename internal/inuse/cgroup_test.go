package inuse

import "testing"

func TestSystemdPath(t *testing.T) {
	for in, want := range map[string]string{
		"/kubepods/pod1/abc":                                "/kubepods/pod1/abc",
		"system.slice:docker:abc":                           "/system.slice/docker-abc.scope",
		"kubepods-besteffort-pod1.slice:cri-containerd:abc": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope",
		":runc:abc":                 "/system.slice/runc-abc.scope",
		"user.slice:podman:x.slice": "/user.slice/x.slice",
		"relative/path":             "/relative/path",
		"/../../etc":                "/etc",
	} {
		if got := systemdPath(in); got != want {
			t.Errorf("systemdPath(%q) = %q, want %q", in, got, want)
		}
	}
}
