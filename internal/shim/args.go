package shim

import "strings"

// Invocation is a runtime command line split the way runc reads it:
// global flags, the subcommand and its arguments.
type Invocation struct {
	Global  []string // global flags as given, sockreap's own removed
	Command string   // "" when there is none (runc --version, runc --help)
	Args    []string // after the subcommand, unchanged

	Log       string // --log
	LogFormat string // --log-format: "text" (default) or "json"
	Debug     bool   // --debug

	// sockreap's own global flags (docker daemon.json runtimeArgs can
	// pass them); they are removed before the real runtime sees the line.
	Runtime string // --sockreap-runtime
	Config  string // --sockreap-config

	// unknownGlobal are global flags neither runc nor crun has: whether
	// they take a value is unknown, so the subcommand is in doubt.
	unknownGlobal []string
}

// globalValueFlags are the global flags of runc and crun that take a
// value; every other flag is a boolean (--debug, --systemd-cgroup, ...).
var globalValueFlags = map[string]bool{
	"log": true, "log-format": true, "log-level": true, "root": true,
	"criu": true, "rootless": true, "cgroup-manager": true,
	"sockreap-runtime": true, "sockreap-config": true,
}

// globalBoolFlags are the boolean global flags of runc and crun.
var globalBoolFlags = map[string]bool{
	"debug": true, "systemd-cgroup": true, "help": true, "h": true,
	"version": true, "v": true, "V": true,
}

// Parse splits args (without the program name). Flags may be written
// -name, --name, --name=value or --name value, as runc's flag parser
// accepts; the first argument that is not a flag is the subcommand.
func Parse(args []string) *Invocation {
	inv := &Invocation{LogFormat: "text"}
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			inv.Global = append(inv.Global, a)
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		name, value, hasValue := splitFlag(a)
		if !globalValueFlags[name] && !globalBoolFlags[name] {
			inv.unknownGlobal = append(inv.unknownGlobal, a)
		}
		n := 1
		if globalValueFlags[name] && !hasValue && i+1 < len(args) {
			value, n = args[i+1], 2
		}
		switch name {
		case "sockreap-runtime":
			inv.Runtime = value
		case "sockreap-config":
			inv.Config = value
		default:
			inv.Global = append(inv.Global, args[i:i+n]...)
		}
		switch name {
		case "log":
			inv.Log = value
		case "log-format":
			inv.LogFormat = value
		case "debug":
			inv.Debug = !hasValue || value == "true"
		}
		i += n
	}
	if i < len(args) {
		inv.Command = args[i]
		inv.Args = args[i+1:]
	}
	return inv
}

// Argv is the command line for the real runtime: the original one minus
// sockreap's own flags.
func (inv *Invocation) Argv() []string {
	out := append([]string{}, inv.Global...)
	if inv.Command != "" {
		out = append(out, inv.Command)
	}
	return append(out, inv.Args...)
}

// splitFlag turns "--name=value" / "-name" into its parts.
func splitFlag(a string) (name, value string, hasValue bool) {
	name = strings.TrimLeft(a, "-")
	if k, v, ok := strings.Cut(name, "="); ok {
		return k, v, true
	}
	return name, "", false
}
