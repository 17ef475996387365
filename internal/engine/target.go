package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"

	"github.com/pelletier/go-toml/v2"
	"github.com/sockreap/sockreap/internal/oci"
)

// Target is an engine configuration sockreap installs itself into.
type Target interface {
	// Plan returns the edits that install sockreap.
	Plan() ([]*Edit, error)
	// PlanRemove returns the edits that undo exactly what Plan adds,
	// leaving everything else in the files as it is.
	PlanRemove() ([]*Edit, error)
	// Reload makes the running engine read the configuration and says
	// what it did; with changed false (the files are as they were) it
	// leaves the engine alone. An engine that cannot reload returns an
	// error wrapping ErrCannotReload that says what to do instead.
	Reload(changed bool) (string, error)
}

// ErrCannotReload is returned by Reload of an engine that reads its
// configuration only at start.
var ErrCannotReload = errors.New("cannot reload")

// DockerTarget is daemon.json: a "sockreap" runtime running the shim.
type DockerTarget struct {
	Config  string // daemon.json
	Pidfile string // dockerd's pid file, for Reload
	DockerOptions
}

func (t DockerTarget) Plan() ([]*Edit, error) {
	return planFile(t.Config, func(old []byte, exists bool) (*Edit, error) {
		return Docker(t.Config, old, exists, t.DockerOptions)
	})
}

// PlanRemove drops runtimes.sockreap (and runtimes, when nothing else is
// left in it); a default-runtime of sockreap becomes runc again.
func (t DockerTarget) PlanRemove() ([]*Edit, error) {
	return planFile(t.Config, func(old []byte, exists bool) (*Edit, error) {
		e := &Edit{Path: t.Config, Old: old, Exists: exists, New: old, Removal: true}
		if !exists || len(bytes.TrimSpace(old)) == 0 {
			return e, nil
		}
		cfg := map[string]any{}
		dec := json.NewDecoder(bytes.NewReader(old))
		dec.UseNumber()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON (%v); fix it, then run again", t.Config, err)
		}
		orig := deepCopy(cfg)
		if rts, ok := cfg["runtimes"].(map[string]any); ok {
			delete(rts, RuntimeName)
			if len(rts) == 0 {
				delete(cfg, "runtimes")
			}
		}
		if cfg["default-runtime"] == RuntimeName {
			// Set, not deleted: dockerd's reload keeps a default-runtime
			// the file no longer names, and one naming a runtime that is
			// gone crashes dockerd 20.10 (nil runtime in its info).
			cfg["default-runtime"] = "runc"
			e.Notes = append(e.Notes, "default-runtime was sockreap: set back to runc")
		}
		if reflect.DeepEqual(orig, cfg) {
			return e, nil
		}
		out, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", t.Config, err)
		}
		e.New = append(out, '\n')
		return e, nil
	})
}

// Reload sends dockerd SIGHUP: it reloads its runtimes without a restart.
func (t DockerTarget) Reload(changed bool) (string, error) {
	if !changed {
		return fmt.Sprintf("daemon.json unchanged: dockerd not signalled (if it has not loaded this file yet: kill -HUP $(cat %s))", t.Pidfile), nil
	}
	pid, err := SignalDockerd(t.Pidfile)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sent SIGHUP to dockerd (pid %d); check: docker info --format '{{json .Runtimes}}'", pid), nil
}

// ContainerdTarget is containerd's config.toml: a "sockreap" CRI runtime
// handler running the shim.
type ContainerdTarget struct {
	Config string
	ContainerdOptions
}

func (t ContainerdTarget) Plan() ([]*Edit, error) {
	return planFile(t.Config, func(old []byte, exists bool) (*Edit, error) {
		return Containerd(t.Config, old, exists, t.ContainerdOptions)
	})
}

// PlanRemove drops the sockreap runtime handler and, when it is the CRI
// default, default_runtime_name (containerd's default is runc); a runc
// handler left alone that is containerd's built-in one goes too, and so
// do tables left empty by that.
func (t ContainerdTarget) PlanRemove() ([]*Edit, error) {
	return planFile(t.Config, func(old []byte, exists bool) (*Edit, error) {
		e := &Edit{Path: t.Config, Old: old, Exists: exists, New: old, Removal: true}
		if !exists || len(bytes.TrimSpace(old)) == 0 {
			return e, nil
		}
		cfg := map[string]any{}
		if err := toml.Unmarshal(old, &cfg); err != nil {
			return nil, fmt.Errorf("%s is not valid TOML (%v); fix it, then run again", t.Config, err)
		}
		orig := deepCopy(cfg)
		version, _ := cfg["version"].(int64)
		plugin, ok := criPlugin[version]
		if !ok {
			return e, nil // not a file configure writes: nothing of ours
		}
		path := []string{"plugins", plugin, "containerd"}
		if ctd := mapAt(cfg, path...); ctd != nil {
			if rts, ok := ctd["runtimes"].(map[string]any); ok {
				delete(rts, RuntimeName)
				// The runc handler Plan adds to keep containerd's default:
				// alone, it is containerd's built-in one again.
				if len(rts) == 1 && reflect.DeepEqual(rts["runc"], defaultRunc(version)) {
					delete(rts, "runc")
				}
			}
			if ctd["default_runtime_name"] == RuntimeName {
				delete(ctd, "default_runtime_name")
				e.Notes = append(e.Notes, "default_runtime_name was sockreap: removed, so containerd's default (runc) applies again")
			}
			pruneEmpty(cfg, append(path, "runtimes")...)
		}
		if reflect.DeepEqual(orig, cfg) {
			return e, nil
		}
		out, err := toml.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", t.Config, err)
		}
		e.New = out
		return e, nil
	})
}

func (ContainerdTarget) Reload(bool) (string, error) {
	return "", fmt.Errorf("containerd %w its configuration: restart it (systemctl restart containerd); running containers keep running", ErrCannotReload)
}

// CRIOTarget is sockreap's own CRI-O drop-in.
type CRIOTarget struct {
	File string
	CRIOOptions
}

func (t CRIOTarget) Plan() ([]*Edit, error) {
	return planFile(t.File, func(old []byte, exists bool) (*Edit, error) {
		return CRIO(t.File, old, exists, t.CRIOOptions), nil
	})
}

// PlanRemove deletes the drop-in: the whole file is sockreap's.
func (t CRIOTarget) PlanRemove() ([]*Edit, error) {
	return planDelete(t.File)
}

func (CRIOTarget) Reload(bool) (string, error) {
	return "", fmt.Errorf("CRI-O %w its runtime handlers: restart it (systemctl restart crio)", ErrCannotReload)
}

// HooksDTarget is the two hooks.d files (CRI-O, podman).
type HooksDTarget struct {
	Dir, Hook string
	Extra     []string // flags after the stage
}

func (t HooksDTarget) Plan() ([]*Edit, error) { return HooksD(t.Dir, t.Hook, t.Extra...) }

// PlanRemove deletes sockreap's hooks.d files.
func (t HooksDTarget) PlanRemove() ([]*Edit, error) {
	var edits []*Edit
	for _, stage := range oci.HookStages {
		es, err := planDelete(filepath.Join(t.Dir, HooksDFile(string(stage))))
		if err != nil {
			return nil, err
		}
		edits = append(edits, es...)
	}
	return edits, nil
}

func (HooksDTarget) Reload(bool) (string, error) {
	return "", fmt.Errorf("hooks.d needs no reload and sockreap %w it: CRI-O watches the directory, podman reads it for each container", ErrCannotReload)
}

// planFile reads path and plans one edit of it.
func planFile(path string, plan func(old []byte, exists bool) (*Edit, error)) ([]*Edit, error) {
	old, exists, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	e, err := plan(old, exists)
	if err != nil {
		return nil, err
	}
	return []*Edit{e}, nil
}

// planDelete plans the removal of a file that is sockreap's own.
func planDelete(path string) ([]*Edit, error) {
	old, exists, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return []*Edit{{Path: path, Old: old, Exists: exists, Delete: true, Removal: true}}, nil
}

// mapAt returns the table at path in m, nil when there is none.
func mapAt(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

// pruneEmpty removes the tables along path that are empty, deepest first.
func pruneEmpty(m map[string]any, path ...string) {
	for i := len(path); i > 0; i-- {
		parent := mapAt(m, path[:i-1]...)
		if child, ok := parent[path[i-1]].(map[string]any); ok && len(child) == 0 {
			delete(parent, path[i-1])
		}
	}
}
