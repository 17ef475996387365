package cli

import (
	"fmt"
	"runtime"
)

// Version is set at build time (-ldflags -X).
var Version = "dev"

func init() {
	c := &Command{Name: "version", Summary: "print the version", Usage: "version"}
	c.Run = func(env *Env, args []string) error {
		fs := NewFlags(env, c)
		if done, err := Parse(env, fs, args); done {
			return err
		}
		fmt.Fprintf(env.Stdout, "sockreap-hook %s (%s %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
	Register(c)
}
