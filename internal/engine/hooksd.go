package engine

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/sockreap/sockreap/internal/oci"
)

// HookTimeout is the OCI hook timeout in seconds written by sockreap. The
// hook's own budget (2 s by default) is shorter; this is the backstop.
const HookTimeout = oci.DefaultHookTimeout

// HooksDFile returns the name of the hooks.d file for one stage. A hooks.d
// 1.0.0 file holds one command line, and sockreap-hook takes the stage as
// its first argument, so each stage has its own file.
func HooksDFile(stage string) string {
	switch stage {
	case string(oci.StageCreateRuntime):
		return "sockreap-createruntime.json"
	case string(oci.StagePoststop):
		return "sockreap-poststop.json"
	}
	return "sockreap-" + stage + ".json"
}

// HooksDJSON is the hooks.d 1.0.0 document (CRI-O, podman) that runs hook
// at stage for every container, with extra flags after the stage.
func HooksDJSON(hook, stage string, extra ...string) []byte {
	args := append([]string{oci.HookName, stage}, extra...)
	args = append(args, fmt.Sprintf("%s=%d", oci.OCITimeoutFlag, HookTimeout))
	type hookCmd struct {
		Path    string   `json:"path"`
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Timeout int      `json:"timeout"`
	}
	doc := struct {
		Version string          `json:"version"`
		Hook    hookCmd         `json:"hook"`
		When    map[string]bool `json:"when"`
		Stages  []string        `json:"stages"`
	}{"1.0.0", hookCmd{hook, args, oci.HookEnv, HookTimeout}, map[string]bool{"always": true}, []string{stage}}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("engine: encode hooks.d: %v", err)) // static shape: cannot fail
	}
	return append(out, '\n')
}

// HooksD returns the edits that install the sockreap hooks.d files in dir.
// The files are sockreap's own: they are replaced whole.
func HooksD(dir, hook string, extra ...string) ([]*Edit, error) {
	var edits []*Edit
	for _, stage := range oci.HookStages {
		path := filepath.Join(dir, HooksDFile(string(stage)))
		old, exists, err := ReadFile(path)
		if err != nil {
			return nil, err
		}
		edits = append(edits, &Edit{Path: path, Old: old, Exists: exists, New: HooksDJSON(hook, string(stage), extra...)})
	}
	return edits, nil
}
