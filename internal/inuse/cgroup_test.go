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

func TestCgroupHints(t *testing.T) {
	got := CgroupHints("kubepods-besteffort-pod1.slice:cri-containerd:abc")
	if len(got) != 2 || got[1] != "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice" {
		t.Errorf("pod container: %q, want its own cgroup and the pod's", got)
	}
	if got := CgroupHints("/kubepods/besteffort/pod12/abc"); len(got) != 2 || got[1] != "/kubepods/besteffort/pod12" {
		t.Errorf("cgroupfs pod container: %q", got)
	}
	if got := CgroupHints("system.slice:docker:abc"); len(got) != 1 {
		t.Errorf("docker container: %q, want only its own cgroup (system.slice is everyone's)", got)
	}
	if CgroupHints("") != nil {
		t.Error("no cgroupsPath gave hints")
	}
}
