package shim

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Dialect is how a runtime reads the flags of its create and run commands.
type Dialect int

const (
	// DialectStrict accepts only the forms that every runtime (runc's Go
	// flags, crun's GNU argp, others) reads alike: --name, --name=value,
	// --name value, and -b value / -d. Anything else is a doubt.
	DialectStrict Dialect = iota
	// DialectRunc reads flags as runc does (urfave/cli v1 over Go's flag
	// package): -name and --name alike, -b=value, flags after the
	// container id moved before it, each dash argument without "=" taking
	// the next non-dash argument along.
	DialectRunc
)

// DialectOf returns the dialect of the runtime binary at path: runc's for
// runc, the strict one for every other runtime.
func DialectOf(binary string) Dialect {
	if real, err := filepath.EvalSymlinks(binary); err == nil {
		binary = real
	}
	if filepath.Base(binary) == "runc" {
		return DialectRunc
	}
	return DialectStrict
}

// ErrHelp is returned by BundleDir for "create --help": the runtime only
// prints its help.
var ErrHelp = errors.New("help requested")

// ErrDoubt is wrapped by the errors of BundleDir when the command line
// cannot be read with certainty; then no file may be touched.
var ErrDoubt = errors.New("cannot tell the bundle for certain")

func doubt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrDoubt, fmt.Sprintf(format, a...))
}

// createFlags are the flags of create and run in runc 1.1–1.5 and crun;
// true marks a flag that takes a value. Flags that only one runtime knows
// are accepted: the runtime that does not know them refuses the command.
var createFlags = map[string]bool{
	"bundle": true, "b": true,
	"console-socket": true, "pid-file": true, "preserve-fds": true,
	"pidfd-socket": true,
	"detach":       false, "d": false, "keep": false, "no-subreaper": false,
	"no-pivot": false, "no-new-keyring": false,
	"help": false, "h": false,
}

// BundleDir returns the absolute bundle directory of a create or run
// command, read as a runtime of dialect d reads it: the last --bundle/-b,
// or the working directory. It fails, wrapping ErrDoubt, when the command
// line holds anything it cannot read for certain (an unknown flag, crun's
// --config, a value that looks like a flag, not exactly one container id),
// and with ErrHelp when the runtime is only asked for help.
func (inv *Invocation) BundleDir(d Dialect) (string, error) {
	if inv.Command != "create" && inv.Command != "run" {
		return "", doubt("%q is not a create or run command", inv.Command)
	}
	if len(inv.unknownGlobal) > 0 {
		return "", doubt("unknown global flag %q", inv.unknownGlobal[0])
	}
	var bundle string
	var err error
	if d == DialectRunc {
		bundle, err = runcBundle(inv.Args)
	} else {
		bundle, err = strictBundle(inv.Args)
	}
	if err != nil {
		return "", err
	}
	if bundle == "" {
		bundle = "."
	}
	abs, err := filepath.Abs(bundle)
	if err != nil {
		return "", doubt("bundle %q: %v", bundle, err)
	}
	return abs, nil
}

// flagName splits a dash argument into name and value; ok is false for
// what is no flag syntax at all ("---x", "--=x").
func flagName(a string) (name, value string, hasValue, ok bool) {
	name = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if name == "" || name[0] == '-' || name[0] == '=' {
		return "", "", false, false
	}
	name, value, hasValue = strings.Cut(name, "=")
	return name, value, hasValue, true
}

// runcBundle reads args the way runc 1.x does: urfave/cli's reorderArgs,
// then Go's flag.Parse, then "exactly one argument".
func runcBundle(args []string) (string, error) {
	// reorderArgs (urfave/cli v1.22): dash arguments move before the
	// others; one without "=" takes the next non-dash argument along,
	// whatever the flag; "--" and what follows stay last.
	var flags, rest []string
	takeValue := false
	for i, a := range args {
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if takeValue && !strings.HasPrefix(a, "-") {
			takeValue = false
			flags = append(flags, a)
			continue
		}
		takeValue = false
		if a != "-" && strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			takeValue = !strings.Contains(a, "=")
		} else {
			rest = append(rest, a)
		}
	}
	args = append(flags, rest...)

	// Go's flag.Parse.
	bundle := ""
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if a == "--" {
			i++
			break
		}
		name, value, hasValue, ok := flagName(a)
		if !ok {
			return "", doubt("bad flag syntax %q", a)
		}
		var err error
		if i, err = takeFlag(args, i, name, value, hasValue, boolValue, &bundle); err != nil {
			return "", err
		}
	}
	if n := len(args) - i; n != 1 {
		return "", doubt("%d arguments where the container id alone is expected", n)
	}
	return bundle, nil
}

// strictBundle reads args with only the forms every runtime agrees on;
// flags may come before or after the container id, up to "--".
func strictBundle(args []string) (string, error) {
	bundle := ""
	positional := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional += len(args) - i - 1
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional++
			continue
		}
		var name, value string
		var hasValue bool
		if strings.HasPrefix(a, "--") {
			var ok bool
			if name, value, hasValue, ok = flagName(a); !ok {
				return "", doubt("bad flag syntax %q", a)
			}
		} else if len(a) == 2 {
			name = a[1:] // -b, -d, -h: a short option alone
		} else {
			// -bX, -b=X, -bundle, -db: runtimes read these differently.
			return "", doubt("flag %q reads differently in different runtimes; write --name value", a)
		}
		var err error
		if i, err = takeFlag(args, i, name, value, hasValue, noValue, &bundle); err != nil {
			return "", err
		}
	}
	if positional != 1 {
		return "", doubt("%d arguments where the container id alone is expected", positional)
	}
	return bundle, nil
}

// checkValue refuses values that one runtime may take as the next flag.
// takeFlag reads the flag args[i], split by the caller into name and (after
// "=") value, by the rules both readers share: an unknown flag, help, or a
// doubtful value is refused; a flag that takes a value and has none after
// "=" takes the next argument. badValue judges a value written to a flag
// that takes none. It returns the index of the last argument it used and
// sets *bundle for -b/--bundle.
func takeFlag(args []string, i int, name, value string, hasValue bool, badValue func(a, value string) error, bundle *string) (int, error) {
	a := args[i]
	takes, known := createFlags[name]
	if !known {
		return i, doubt("unknown flag %q", a)
	}
	if name == "help" || name == "h" {
		return i, ErrHelp
	}
	if !takes {
		if hasValue {
			return i, badValue(a, value)
		}
		return i, nil
	}
	if !hasValue {
		if i+1 >= len(args) {
			return i, doubt("flag %q has no value", a)
		}
		i++
		value = args[i]
	}
	if err := checkValue(a, name, value); err != nil {
		return i, err
	}
	if name == "bundle" || name == "b" {
		*bundle = value
	}
	return i, nil
}

// boolValue accepts what Go's flag package reads as a boolean (runc).
func boolValue(a, value string) error {
	if _, err := strconv.ParseBool(value); err != nil {
		return doubt("flag %q: %q is no boolean", a, value)
	}
	return nil
}

// noValue refuses any value (the strict reading).
func noValue(a, _ string) error {
	return doubt("flag %q takes no value", a)
}

func checkValue(a, name, value string) error {
	if strings.HasPrefix(value, "-") {
		return doubt("flag %q: value %q looks like a flag", a, value)
	}
	if (name == "bundle" || name == "b") && value == "" {
		return doubt("flag %q: empty bundle", a)
	}
	return nil
}
