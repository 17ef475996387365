package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// RuntimeName is the name sockreap registers its shim under in every engine.
const RuntimeName = "sockreap"

// DockerOptions says what to write into daemon.json.
type DockerOptions struct {
	ShimPath   string // absolute path of sockreap-shim
	SetDefault bool   // also make it the default-runtime
}

// Docker returns daemon.json with runtimes.sockreap.path set (other keys
// under runtimes.sockreap, such as runtimeArgs, are kept) and, with
// SetDefault, default-runtime = "sockreap". Every other key survives;
// numbers keep their exact text. Keys come out sorted.
func Docker(path string, old []byte, exists bool, o DockerOptions) (*Edit, error) {
	e := &Edit{Path: path, Old: old, Exists: exists}
	cfg := map[string]any{}
	if len(bytes.TrimSpace(old)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(old))
		dec.UseNumber()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON (%v); fix or move it away, then run again", path, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s has data after its JSON object; fix it, then run again", path)
		}
	}
	orig := deepCopy(cfg)

	runtimes, err := subMap(cfg, "runtimes", path)
	if err != nil {
		return nil, err
	}
	ours, err := subMap(runtimes, RuntimeName, path+": runtimes")
	if err != nil {
		return nil, err
	}
	ours["path"] = o.ShimPath
	if o.SetDefault {
		if prev, ok := cfg["default-runtime"].(string); ok && prev != RuntimeName && prev != "runc" && prev != "" {
			e.Notes = append(e.Notes, fmt.Sprintf("default-runtime was %q; sockreap-shim runs runc unless told otherwise (runtime in /etc/sockreap/shim.toml, or runtimeArgs [\"--sockreap-runtime=PATH\"])", prev))
		}
		cfg["default-runtime"] = RuntimeName
	}

	if exists && reflect.DeepEqual(orig, cfg) {
		e.New = old // unchanged: leave the file byte for byte as it is
		return e, nil
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", path, err)
	}
	e.New = append(out, '\n')
	return e, nil
}

// subMap returns m[key] as a map, creating it when missing. A value of
// another type is an error: overwriting it would lose the user's setting.
func subMap(m map[string]any, key, where string) (map[string]any, error) {
	v, ok := m[key]
	if !ok || v == nil {
		sub := map[string]any{}
		m[key] = sub
		return sub, nil
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %q is a %T, not a table/object; fix it by hand, then run again", where, key, v)
	}
	return sub, nil
}

// deepCopy copies the maps and slices of a decoded document.
func deepCopy(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = deepCopyValue(x)
	}
	return out
}

func deepCopyValue(x any) any {
	switch t := x.(type) {
	case map[string]any:
		return deepCopy(t)
	case []any:
		s := make([]any, len(t))
		for i := range t {
			s[i] = deepCopyValue(t[i])
		}
		return s
	case []map[string]any:
		s := make([]map[string]any, len(t))
		for i := range t {
			s[i] = deepCopy(t[i])
		}
		return s
	}
	return x
}
