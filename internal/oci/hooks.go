package oci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// HookOptions say which binary the hooks run and what extra flags follow
// the stage name.
type HookOptions struct {
	Path    string   // absolute path of sockreap-hook
	Args    []string // extra flags after the stage name, e.g. --state-dir DIR
	Timeout int      // OCI hook timeout in seconds; 0 means none
	// Stages are the stages to add; nil means both (HookStages). The
	// hooks of a stage not named are left as they are.
	Stages []Stage
}

// HookName is the program name sockreap hooks carry in args[0]; a hook whose
// path or args[0] ends in it is recognised as ours.
const HookName = "sockreap-hook"

// OCITimeoutFlag is the flag through which the injected hook learns its own
// OCI timeout (the state on stdin does not carry it), so that it can keep
// its drain budget inside it.
const OCITimeoutFlag = "--oci-timeout"

// HookEnv is the environment sockreap's hook entries give the hook (a
// runtime starts a hook with only its entry's env). GOMAXPROCS=1: a hook
// is a fresh Go process at every container start and stop, and one that
// starts with a P per CPU spends its short life starting and waking
// threads it has no work for; on the 2-CPU bench VM one P took about 1 ms
// off each run+delete cycle (test/bench/hooklatency). A drain that has
// sockets to destroy, and a scan of the host's processes, raise it
// themselves.
var HookEnv = []string{"GOMAXPROCS=1"}

// withHookEnv is env with HookEnv's variables added where env does not
// set them: an operator's own settings in a hook entry win.
func withHookEnv(env []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range HookEnv {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") }) {
			out = append(out, kv)
		}
	}
	return out
}

// hookFor builds the hook entry for stage.
func hookFor(stage Stage, opts HookOptions) map[string]any {
	args := []string{HookName, string(stage)}
	args = append(args, opts.Args...)
	h := map[string]any{"path": opts.Path, "env": HookEnv}
	if opts.Timeout > 0 {
		args = append(args, OCITimeoutFlag+"="+strconv.Itoa(opts.Timeout))
		h["timeout"] = opts.Timeout
	}
	h["args"] = args
	return h
}

// AddHooks inserts the sockreap createRuntime and poststop hooks into
// bundle/config.json. It is idempotent: an existing sockreap hook is updated
// in place and duplicates are dropped. Every other field is kept (the file is
// decoded generically, so fields unknown to this program survive), and the
// file is replaced atomically with its mode and owner kept. changed is false
// when the file already had exactly these hooks (it is then not rewritten).
func AddHooks(bundle string, opts HookOptions) (changed bool, err error) {
	if !filepath.IsAbs(opts.Path) {
		return false, fmt.Errorf("add sockreap hooks to %s: hook path %q is not absolute (OCI requires an absolute path)", ConfigPath(bundle), opts.Path)
	}
	if opts.Timeout < 0 {
		return false, fmt.Errorf("add sockreap hooks to %s: negative hook timeout %d", ConfigPath(bundle), opts.Timeout)
	}
	return editHooks(bundle, func(stage Stage, list []json.RawMessage) ([]json.RawMessage, error) {
		if opts.Stages != nil && !slices.Contains(opts.Stages, stage) {
			return list, nil
		}
		want, err := json.Marshal(hookFor(stage, opts))
		if err != nil {
			return nil, err
		}
		var out []json.RawMessage
		placed := false
		for _, raw := range list {
			h, ours, err := decodeHook(raw, opts.Path)
			if err != nil {
				return nil, fmt.Errorf("hooks.%s: %w", stage, err)
			}
			if !ours {
				out = append(out, raw)
				continue
			}
			if placed {
				continue // a duplicate of ours
			}
			placed = true
			// Update in place: keep fields we do not set, and the
			// operator's env with ours added where it is silent.
			delete(h, "timeout")
			var mine map[string]json.RawMessage
			_ = json.Unmarshal(want, &mine)
			var env []string
			if err := json.Unmarshal(h["env"], &env); h["env"] != nil && err != nil {
				return nil, fmt.Errorf("hooks.%s: env of the sockreap hook: %w", stage, err)
			}
			for k, v := range mine {
				h[k] = v
			}
			if h["env"], err = json.Marshal(withHookEnv(env)); err != nil {
				return nil, err
			}
			b, err := json.Marshal(h)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		if !placed {
			if stage == StagePoststop {
				// First: drain before other poststop hooks (CNI
				// teardown, ...) take the network apart.
				out = append([]json.RawMessage{want}, out...)
			} else {
				// Last: pin once the namespace is fully set up.
				out = append(out, want)
			}
		}
		return out, nil
	})
}

// RemoveHooks deletes every sockreap hook from bundle/config.json, leaving
// everything else as it was. hookPath, when not empty, is also recognised as
// ours.
func RemoveHooks(bundle, hookPath string) (changed bool, err error) {
	return editHooks(bundle, func(stage Stage, list []json.RawMessage) ([]json.RawMessage, error) {
		var out []json.RawMessage
		for _, raw := range list {
			_, ours, err := decodeHook(raw, hookPath)
			if err != nil {
				return nil, fmt.Errorf("hooks.%s: %w", stage, err)
			}
			if !ours {
				out = append(out, raw)
			}
		}
		return out, nil
	})
}

// decodeHook decodes one hook entry and tells whether it is a sockreap hook.
func decodeHook(raw json.RawMessage, ourPath string) (map[string]json.RawMessage, bool, error) {
	var h map[string]json.RawMessage
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, false, fmt.Errorf("malformed hook entry %s: %w", raw, err)
	}
	var path string
	var args []string
	_ = json.Unmarshal(h["path"], &path)
	_ = json.Unmarshal(h["args"], &args)
	ours := (ourPath != "" && path == ourPath) || filepath.Base(path) == HookName
	if len(args) > 0 && filepath.Base(args[0]) == HookName {
		ours = true
	}
	return h, ours, nil
}

// editHooks applies edit to the createRuntime and poststop hook lists of
// bundle/config.json and writes the file back if anything changed.
func editHooks(bundle string, edit func(stage Stage, list []json.RawMessage) ([]json.RawMessage, error)) (bool, error) {
	file, orig, err := openBundleFile(bundle)
	if err != nil {
		return false, fmt.Errorf("edit hooks: %w", err)
	}
	defer file.Close()
	path := file.path
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(orig, &doc); err != nil {
		return false, fmt.Errorf("edit hooks: parse bundle config %s: %w", path, err)
	}
	if doc == nil {
		return false, fmt.Errorf("edit hooks: bundle config %s is not a JSON object", path)
	}
	var hooks map[string]json.RawMessage
	if raw, ok := doc["hooks"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &hooks); err != nil {
			return false, fmt.Errorf("edit hooks: parse hooks of %s: %w", path, err)
		}
	}
	if hooks == nil {
		hooks = map[string]json.RawMessage{}
	}
	oldHooks, _ := json.Marshal(hooks)
	for _, stage := range HookStages {
		var list []json.RawMessage
		if raw, ok := hooks[string(stage)]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, &list); err != nil {
				return false, fmt.Errorf("edit hooks: parse hooks.%s of %s: %w", stage, path, err)
			}
		}
		list, err := edit(stage, list)
		if err != nil {
			return false, fmt.Errorf("edit hooks of %s: %w", path, err)
		}
		if len(list) == 0 {
			delete(hooks, string(stage))
			continue
		}
		b, err := json.Marshal(list)
		if err != nil {
			return false, fmt.Errorf("edit hooks: encode hooks.%s: %w", stage, err)
		}
		hooks[string(stage)] = b
	}
	newHooks, _ := json.Marshal(hooks)
	if sameJSON(oldHooks, newHooks) {
		return false, nil
	}
	if len(hooks) == 0 {
		delete(doc, "hooks")
	} else {
		doc["hooks"] = newHooks
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "\t")
	if err := enc.Encode(doc); err != nil {
		return false, fmt.Errorf("edit hooks: encode %s: %w", path, err)
	}
	if err := file.Replace(buf.Bytes()); err != nil {
		return false, err
	}
	return true, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// sameJSON compares two JSON documents by meaning, not by key order.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// HasHook reports whether bundle/config.json carries a sockreap hook at
// stage. poststop uses it to tell a container whose createRuntime hook
// never ran (the runtime failed before it) from one installed without it.
func HasHook(bundle string, stage Stage) (bool, error) {
	path, b, err := readConfigFile(ConfigPath(bundle))
	if err != nil {
		return false, err
	}
	var doc struct {
		Hooks map[string][]json.RawMessage `json:"hooks"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return false, fmt.Errorf("parse bundle config %s: %w", path, err)
	}
	for _, raw := range doc.Hooks[string(stage)] {
		if _, ours, err := decodeHook(raw, ""); err == nil && ours {
			return true, nil
		}
	}
	return false, nil
}
