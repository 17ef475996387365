// Package kubepod reads a DaemonSet manifest and turns its pod template
// into the CRI configurations kubelet would send (crictl's pod and
// container JSON), so that tests run the very pod spec deploy/kubernetes
// ships — image, command, host paths, security context — on a real
// runtime without a cluster.
//
// It reads a small subset of the Kubernetes API (hand-written structs; the
// k8s.io/api types would pull in most of apimachinery for a few fields),
// strictly: a field it does not know is an error, so a manifest cannot
// gain a setting the tests silently leave out. Scheduling-only fields
// (tolerations, priority, update strategy, resources) are accepted and not
// carried over.
package kubepod

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// DaemonSet is the part of apps/v1 DaemonSet the tests run.
type DaemonSet struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector       json.RawMessage `json:"selector"`
		UpdateStrategy json.RawMessage `json:"updateStrategy,omitempty"`
		Template       struct {
			Metadata ObjectMeta `json:"metadata"`
			Spec     PodSpec    `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// ObjectMeta is an object's name and labels.
type ObjectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodSpec is the part of a pod spec the tests run.
type PodSpec struct {
	HostPID     bool `json:"hostPID,omitempty"`
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// Scheduling and API access: not part of what the runtime runs.
	PriorityClassName            string          `json:"priorityClassName,omitempty"`
	AutomountServiceAccountToken *bool           `json:"automountServiceAccountToken,omitempty"`
	Tolerations                  json.RawMessage `json:"tolerations,omitempty"`

	InitContainers []Container `json:"initContainers,omitempty"`
	Containers     []Container `json:"containers"`
	Volumes        []Volume    `json:"volumes,omitempty"`
}

// Container is the part of a container spec the tests run.
type Container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	ImagePullPolicy string           `json:"imagePullPolicy,omitempty"`
	Command         []string         `json:"command,omitempty"`
	Args            []string         `json:"args,omitempty"`
	Env             []EnvVar         `json:"env,omitempty"`
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	Resources       json.RawMessage  `json:"resources,omitempty"`
	VolumeMounts    []VolumeMount    `json:"volumeMounts,omitempty"`
}

// EnvVar is a literal environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SecurityContext is a container's security context.
type SecurityContext struct {
	RunAsUser                *int64        `json:"runAsUser,omitempty"`
	Privileged               *bool         `json:"privileged,omitempty"`
	AllowPrivilegeEscalation *bool         `json:"allowPrivilegeEscalation,omitempty"`
	ReadOnlyRootFilesystem   *bool         `json:"readOnlyRootFilesystem,omitempty"`
	Capabilities             *Capabilities `json:"capabilities,omitempty"`
	SeccompProfile           *Profile      `json:"seccompProfile,omitempty"`
	AppArmorProfile          *Profile      `json:"appArmorProfile,omitempty"`
}

// Capabilities are added and dropped capabilities.
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Profile is a seccomp or AppArmor profile.
type Profile struct {
	Type             string `json:"type"`
	LocalhostProfile string `json:"localhostProfile,omitempty"`
}

// Volume is a hostPath or emptyDir volume.
type Volume struct {
	Name     string `json:"name"`
	HostPath *struct {
		Path string `json:"path"`
		Type string `json:"type,omitempty"`
	} `json:"hostPath,omitempty"`
	EmptyDir *struct {
		Medium string `json:"medium,omitempty"`
	} `json:"emptyDir,omitempty"`
}

// VolumeMount mounts a volume into a container.
type VolumeMount struct {
	Name             string `json:"name"`
	MountPath        string `json:"mountPath"`
	MountPropagation string `json:"mountPropagation,omitempty"`
	ReadOnly         bool   `json:"readOnly,omitempty"`
}

// ReadDaemonSet returns the DaemonSet named name in the manifest file at
// path (which may hold several documents).
func ReadDaemonSet(path, name string) (*DaemonSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if head.Kind != "DaemonSet" || head.Metadata.Name != name {
			continue
		}
		var ds DaemonSet
		if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
			return nil, fmt.Errorf("%s: DaemonSet %s: %w (a field the tests cannot carry to the runtime? add it to package kubepod)", path, name, err)
		}
		return &ds, nil
	}
	return nil, fmt.Errorf("%s: no DaemonSet named %s", path, name)
}

// CRI namespace modes.
const (
	nsPod       = 0
	nsContainer = 1
	nsNode      = 2
)

func (s *PodSpec) namespaceOptions() map[string]any {
	net, pid := nsPod, nsContainer // kubelet's defaults
	if s.HostNetwork {
		net = nsNode
	}
	if s.HostPID {
		pid = nsNode
	}
	return map[string]any{"network": net, "pid": pid}
}

// PodConfig is crictl's pod sandbox configuration for the template.
func (d *DaemonSet) PodConfig(name, namespace, uid, logDir string) map[string]any {
	t := d.Spec.Template
	return map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": namespace, "uid": uid, "attempt": 0},
		"labels":        t.Metadata.Labels,
		"log_directory": logDir,
		"linux": map[string]any{
			"security_context": map[string]any{"namespace_options": t.Spec.namespaceOptions()},
		},
	}
}

// Container returns the container of the template named name, init
// containers included.
func (d *DaemonSet) Container(name string) (*Container, error) {
	s := &d.Spec.Template.Spec
	for _, list := range [][]Container{s.InitContainers, s.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("DaemonSet %s has no container %s", d.Metadata.Name, name)
}

// HostDirs maps the template's volumes to directories on this machine:
// hostPath gives a volume's path on the node (the function may move it,
// e.g. into a test directory), emptyDir a fresh directory for a volume.
type HostDirs struct {
	HostPath func(path string) string
	EmptyDir func(volume string) string
}

// ContainerConfig is crictl's container configuration for container c, as
// kubelet would send it.
func (d *DaemonSet) ContainerConfig(c *Container, dirs HostDirs) (map[string]any, error) {
	spec := &d.Spec.Template.Spec
	volumes := map[string]*Volume{}
	for i := range spec.Volumes {
		volumes[spec.Volumes[i].Name] = &spec.Volumes[i]
	}
	var mounts []map[string]any
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		if v == nil {
			return nil, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
		}
		var host string
		switch {
		case v.HostPath != nil:
			host = dirs.HostPath(v.HostPath.Path)
		case v.EmptyDir != nil:
			host = dirs.EmptyDir(v.Name)
		default:
			return nil, fmt.Errorf("volume %s: only hostPath and emptyDir are supported", v.Name)
		}
		prop, ok := map[string]int{"": 0, "None": 0, "HostToContainer": 1, "Bidirectional": 2}[m.MountPropagation]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: unknown mountPropagation %q", m.Name, m.MountPropagation)
		}
		mounts = append(mounts, map[string]any{"container_path": m.MountPath, "host_path": host, "readonly": m.ReadOnly, "propagation": prop})
	}
	var envs []map[string]any
	for _, e := range c.Env {
		envs = append(envs, map[string]any{"key": e.Name, "value": e.Value})
	}
	sc, err := c.securityContext()
	if err != nil {
		return nil, err
	}
	sc["namespace_options"] = spec.namespaceOptions()
	return map[string]any{
		"metadata": map[string]any{"name": c.Name},
		"image":    map[string]any{"image": c.Image},
		"command":  c.Command,
		"args":     c.Args,
		"envs":     envs,
		"mounts":   mounts,
		"log_path": c.Name + ".log",
		"linux":    map[string]any{"security_context": sc},
	}, nil
}

// securityContext is the CRI LinuxContainerSecurityContext kubelet derives.
func (c *Container) securityContext() (map[string]any, error) {
	sc := map[string]any{}
	k := c.SecurityContext
	if k == nil {
		return sc, nil
	}
	if k.Privileged != nil {
		sc["privileged"] = *k.Privileged
	}
	if k.ReadOnlyRootFilesystem != nil {
		sc["readonly_rootfs"] = *k.ReadOnlyRootFilesystem
	}
	if k.RunAsUser != nil {
		sc["run_as_user"] = map[string]any{"value": *k.RunAsUser}
	}
	if k.AllowPrivilegeEscalation != nil {
		sc["no_new_privs"] = !*k.AllowPrivilegeEscalation
	}
	if k.Capabilities != nil {
		sc["capabilities"] = map[string]any{"add_capabilities": k.Capabilities.Add, "drop_capabilities": k.Capabilities.Drop}
	}
	for key, p := range map[string]*Profile{"seccomp": k.SeccompProfile, "apparmor": k.AppArmorProfile} {
		if p == nil {
			continue
		}
		typ, ok := map[string]int{"RuntimeDefault": 0, "Unconfined": 1, "Localhost": 2}[p.Type]
		if !ok {
			return nil, fmt.Errorf("container %s: unknown %s profile type %q", c.Name, key, p.Type)
		}
		sc[key] = map[string]any{"profile_type": typ, "localhost_ref": p.LocalhostProfile}
	}
	return sc, nil
}

// AddedCapabilities lists the container's added capabilities, upper case
// without CAP_ (what the manifest says).
func (c *Container) AddedCapabilities() []string {
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		return nil
	}
	out := make([]string, 0, len(c.SecurityContext.Capabilities.Add))
	for _, s := range c.SecurityContext.Capabilities.Add {
		out = append(out, strings.TrimPrefix(strings.ToUpper(s), "CAP_"))
	}
	return out
}
