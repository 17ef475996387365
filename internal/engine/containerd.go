package engine

import (
	"bytes"
	"fmt"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"sync"

	"github.com/pelletier/go-toml/v2"
)

// ContainerdOptions says what to write into containerd's config.toml.
type ContainerdOptions struct {
	ShimPath   string // absolute path of sockreap-shim
	SetDefault bool   // make sockreap the CRI default runtime
	// Version is the config schema to write when the file has no
	// "version" key yet: 2 (containerd 1.x) or 3 (containerd 2.x). 0 asks
	// the installed containerd binary.
	Version int
}

// criPlugin is where the CRI runtimes live, by config version.
var criPlugin = map[int64]string{
	2: "io.containerd.grpc.v1.cri",
	3: "io.containerd.cri.v1.runtime",
}

// Containerd returns config.toml with a "sockreap" CRI runtime handler of
// type io.containerd.runc.v2 whose options.BinaryName is the shim. A new
// handler starts as a copy of the existing runc handler, so options such as
// SystemdCgroup carry over. Every other key survives (comments do not:
// they are in the backup).
func Containerd(path string, old []byte, exists bool, o ContainerdOptions) (*Edit, error) {
	e := &Edit{Path: path, Old: old, Exists: exists}
	cfg := map[string]any{}
	if len(bytes.TrimSpace(old)) > 0 {
		if err := toml.Unmarshal(old, &cfg); err != nil {
			return nil, fmt.Errorf("%s is not valid TOML (%v); fix or move it away, then run again", path, err)
		}
	}
	orig := deepCopy(cfg)

	var version int64
	switch v := cfg["version"].(type) {
	case int64:
		version = v
	case nil:
		if len(cfg) > 0 {
			return nil, fmt.Errorf("%s has no \"version\" key (config version 1); migrate it first: containerd config migrate (2.x) or add version = 2 and rename the plugin tables (1.x)", path)
		}
		version = int64(o.Version)
		if version == 0 {
			version = int64(ContainerdConfigVersion())
		}
		cfg["version"] = version
	default:
		return nil, fmt.Errorf("%s: \"version\" is %v, not a number; fix it, then run again", path, v)
	}
	plugin, ok := criPlugin[version]
	if !ok {
		return nil, fmt.Errorf("%s: config version %d is not supported (2 for containerd 1.x, 3 for containerd 2.x)", path, version)
	}

	where := path + ": plugins"
	plugins, err := subMap(cfg, "plugins", path)
	if err != nil {
		return nil, err
	}
	cri, err := subMap(plugins, plugin, where)
	if err != nil {
		return nil, err
	}
	where += "." + plugin
	ctd, err := subMap(cri, "containerd", where)
	if err != nil {
		return nil, err
	}
	where += ".containerd"
	runtimes, err := subMap(ctd, "runtimes", where)
	if err != nil {
		return nil, err
	}
	where += ".runtimes"

	if _, have := runtimes["runc"]; !have {
		if def, _ := ctd["default_runtime_name"].(string); def == "" || def == "runc" {
			// containerd replaces its built-in runtimes with the file's
			// table: without this, a file naming only sockreap loses
			// runc, the default, and the CRI plugin fails to load.
			runtimes["runc"] = defaultRunc(version)
			e.Notes = append(e.Notes, "added a runc handler (containerd's default, io.containerd.runc.v2): a runtimes table in the file replaces containerd's built-in one")
		}
	}
	if _, have := runtimes[RuntimeName]; !have {
		if runc, ok := runtimes["runc"].(map[string]any); ok {
			runtimes[RuntimeName] = deepCopy(runc)
			if opts, ok := runc["options"].(map[string]any); ok {
				if bin, ok := opts["BinaryName"].(string); ok && bin != "" && bin != "runc" {
					e.Notes = append(e.Notes, fmt.Sprintf("the runc handler runs %s: put runtime = %q in /etc/sockreap/shim.toml so the shim keeps running that binary", bin, bin))
				}
			}
		}
	}
	ours, err := subMap(runtimes, RuntimeName, where)
	if err != nil {
		return nil, err
	}
	ours["runtime_type"] = "io.containerd.runc.v2"
	opts, err := subMap(ours, "options", where+"."+RuntimeName)
	if err != nil {
		return nil, err
	}
	opts["BinaryName"] = o.ShimPath
	if o.SetDefault {
		if prev, ok := ctd["default_runtime_name"].(string); ok && prev != "runc" && prev != RuntimeName {
			e.Notes = append(e.Notes, fmt.Sprintf("default_runtime_name was %q", prev))
		}
		ctd["default_runtime_name"] = RuntimeName
	}

	if exists && reflect.DeepEqual(orig, cfg) {
		e.New = old
		return e, nil
	}
	out, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", path, err)
	}
	e.New = out
	if exists && bytes.Contains(old, []byte("#")) {
		e.Notes = append(e.Notes, "comments of the old file are not carried over; they are in the backup")
	}
	return e, nil
}

// defaultRunc is containerd's built-in runc handler in config version v:
// containerd 2.x (v3) also names the sandboxer that runs its pause
// containers.
func defaultRunc(v int64) map[string]any {
	runc := map[string]any{"runtime_type": "io.containerd.runc.v2"}
	if v >= 3 {
		runc["sandboxer"] = "podsandbox"
	}
	return runc
}

// versionRE is compiled when first needed, not at every hook process's
// start (regexp compilation is a tenth of the hook's package init).
var versionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bv?(\d+)\.\d+\.\d+`) })

// ContainerdConfigVersion returns the config version the installed
// containerd reads natively: 3 for containerd 2.x, else 2.
func ContainerdConfigVersion() int {
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		return 2
	}
	m := versionRE().FindSubmatch(out)
	if m == nil {
		return 2
	}
	if major, _ := strconv.Atoi(string(m[1])); major >= 2 {
		return 3
	}
	return 2
}
