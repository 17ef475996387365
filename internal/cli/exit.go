package cli

import (
	"errors"
	"fmt"
)

// The exit-code contract of sockreap-hook, the same for every command.
// Commands return errors; Main maps them with ExitCode.
const (
	ExitOK        = 0 // done (a hook that failed open, too)
	ExitRemaining = 1 // drain: sockets remain (ErrRemaining)
	ExitUsage     = 2 // usage or input error: bad flag, argument, file, state (*UsageError)
	ExitFailure   = 3 // runtime failure: the command could not do its work
)

// exitCodesHelp is the contract as --help prints it.
const exitCodesHelp = "Exit codes: 0 done; 1 sockets remain (drain); 2 usage or input error; 3 runtime failure (a hook fails open: 0 unless --strict)."

// ErrRemaining is returned by drain when sockets remain after it.
var ErrRemaining = errors.New("sockets remain")

// UsageError is a usage or input error: the user can fix the command line
// or the input it names.
type UsageError struct {
	Cmd string // the command, e.g. "drain" or "configure docker"; "" for none
	Err error
}

func (e *UsageError) Error() string { return withCmd(e.Cmd, e.Err) }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError of command cmd.
func Usagef(cmd, format string, a ...any) error {
	return &UsageError{Cmd: cmd, Err: fmt.Errorf(format, a...)}
}

// Failure is a runtime failure of a command: it could not do its work.
type Failure struct {
	Cmd string
	Err error
}

func (e *Failure) Error() string { return withCmd(e.Cmd, e.Err) }
func (e *Failure) Unwrap() error { return e.Err }

// Failf returns a *Failure of command cmd.
func Failf(cmd, format string, a ...any) error {
	return &Failure{Cmd: cmd, Err: fmt.Errorf(format, a...)}
}

// reported marks an error whose message the command already printed:
// Main only maps its exit code.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }

// ExitCode maps a command's error to its exit code: nil 0, ErrRemaining 1,
// a *UsageError 2, anything else 3.
func ExitCode(err error) int {
	var u *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrRemaining):
		return ExitRemaining
	case errors.As(err, &u):
		return ExitUsage
	}
	return ExitFailure
}

func withCmd(cmd string, err error) string {
	if cmd == "" {
		return err.Error()
	}
	return cmd + ": " + err.Error()
}

// prefixed is err as Main prints it after the program name.
func prefixed(err error) string {
	var u *UsageError
	var f *Failure
	if (errors.As(err, &u) && u.Cmd != "") || (errors.As(err, &f) && f.Cmd != "") {
		return " " + err.Error()
	}
	return ": " + err.Error()
}
