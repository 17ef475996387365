package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sockreap/sockreap/internal/safefs"
	"github.com/sockreap/sockreap/internal/textsafe"
)

// AnnotationDrain opts a container out of the drain when set to "false"
// (also "0", "no", "off").
const AnnotationDrain = "io.sockreap.drain"

// DrainDisabled reports whether the annotations opt the container out.
func DrainDisabled(annotations map[string]string) bool {
	v, ok := annotations[AnnotationDrain]
	if !ok {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "0", "no", "off":
		return true
	}
	return false
}

// Config is the part of a bundle's config.json the hook needs.
type Config struct {
	Annotations map[string]string
	// HasNetns is true when the container gets its own (or a joined)
	// network namespace; false means it shares the runtime's (host) one.
	HasNetns bool
	// NetnsPath is the path of the network namespace the container joins,
	// "" when the runtime creates a fresh one.
	NetnsPath string
	// CgroupsPath is linux.cgroupsPath: where the container's processes
	// ran (a hint for the safety check, never trusted for more).
	CgroupsPath string
}

// MaxConfigSize bounds the config.json sockreap reads: real ones are a few
// kilobytes (a large seccomp profile makes them tens); a file above this is
// not read at all, so that a hostile or broken bundle cannot make a hook
// spend seconds and hundreds of megabytes on every container stop.
const MaxConfigSize = 16 << 20

// readConfigFile reads bundle's config.json (following a symlinked
// config.json, as runtimes do) within MaxConfigSize.
func readConfigFile(path string) (real string, data []byte, err error) {
	real = path
	if r, err := filepath.EvalSymlinks(path); err == nil {
		real = r
	}
	data, err = safefs.ReadFile(real, MaxConfigSize)
	if errors.Is(err, safefs.ErrTooLarge) {
		return real, nil, fmt.Errorf("bundle config %s is larger than %d MiB, the most sockreap reads; not a usable config.json: %w", path, MaxConfigSize>>20, err)
	}
	if err != nil {
		return real, nil, fmt.Errorf("read bundle config %s: %w", path, err)
	}
	return real, data, nil
}

// ConfigPath returns bundle/config.json.
func ConfigPath(bundle string) string { return filepath.Join(bundle, "config.json") }

// ReadConfig reads the annotations and the network namespace of
// bundle/config.json. Fields it does not need are not checked.
func ReadConfig(bundle string) (*Config, error) {
	if bundle == "" {
		return nil, errors.New("read bundle config: the OCI state names no bundle directory")
	}
	path := ConfigPath(bundle)
	_, b, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Annotations map[string]string `json:"annotations"`
		Linux       *struct {
			Namespaces  []specs.LinuxNamespace `json:"namespaces"`
			CgroupsPath string                 `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse bundle config %s: %w", path, err)
	}
	c := &Config{Annotations: doc.Annotations}
	if doc.Linux != nil {
		c.CgroupsPath = doc.Linux.CgroupsPath
		for _, ns := range doc.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				c.HasNetns = true
				c.NetnsPath = ns.Path
			}
		}
	}
	return c, nil
}

// IsProcPath reports whether a namespace path leads into /proc (for
// example /proc/<pid>/ns/net, or a symlink to one). Such a path names a
// process, not a namespace: once that process is gone its pid may belong
// to another one, so it must never be trusted after the container stopped.
func IsProcPath(path string) bool {
	return ClassifyNetnsPath(path).Kind == NetnsProc
}

// AnnotationManager names the engine that wrote config.json
// ("libpod" for podman, "cri-o" for CRI-O).
const AnnotationManager = "io.container.manager"

// teardownFirst are the engines (AnnotationManager values) that remove a
// container's network namespace mount before its poststop hook runs:
// podman's cleanup tears the network down first and runs poststop at
// removal; CRI-O removes the pod's namespace at StopPodSandbox, before
// the infra container is deleted.
var teardownFirst = map[string]bool{"libpod": true, "cri-o": true}

// PinNeeded tells whether the createRuntime hook must pin the container's
// network namespace for poststop to reach it. kind is what config.json's
// namespace path is (ClassifyNetnsPath; ignored without a path). A pin is
// needed where the runtime creates the namespace itself (no path), where
// the path names a process (/proc/PID/ns/net: stale by poststop), where
// the path is no namespace mount now, and where the engine removes the
// mount before poststop runs (podman, CRI-O). Elsewhere — containerd's
// CRI pods, a namespace made with `ip netns add` — the mount the engine
// keeps until after the container's delete is how poststop reaches the
// namespace, and why says so.
func PinNeeded(c *Config, kind NetnsKind) (needed bool, why string) {
	switch {
	case !c.HasNetns:
		return false, "the container has no network namespace of its own"
	case c.NetnsPath == "", kind != NetnsNsfs:
		return true, ""
	case teardownFirst[c.Annotations[AnnotationManager]]:
		return true, ""
	}
	return false, "config.json names the network namespace mount " + textsafe.Quote(c.NetnsPath) + ", which the engine keeps until the container is deleted: poststop drains it there"
}
