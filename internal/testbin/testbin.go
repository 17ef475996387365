// Package testbin builds the project's commands once per test binary, for
// suites that run them as an operator or a runtime would.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// packages maps each command to its Go package.
var packages = map[string]string{
	"sockreap-hook": "github.com/sockreap/sockreap/hook",
	"sockreap-shim": "github.com/sockreap/sockreap/shim",
	"sockreap-nri":  "github.com/sockreap/sockreap/nri",
}

var dir string

// Main builds the named commands (static, into a fresh directory that
// every user may read, so daemons can run them), runs the tests, removes
// the directory and exits with the tests' code.
func Main(m *testing.M, names ...string) {
	os.Exit(run(m, names))
}

func run(m *testing.M, names []string) int {
	var err error
	if dir, err = os.MkdirTemp("", "sockreap-testbin-"); err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		return 1
	}
	for _, name := range names {
		pkg, ok := packages[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "testbin: unknown command %q\n", name)
			return 1
		}
		cmd := exec.Command("go", "build", "-o", Path(name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "testbin: build %s: %v\n%s", name, err, out)
			return 1
		}
	}
	return m.Run()
}

// Path is where Main built the command name.
func Path(name string) string { return filepath.Join(dir, name) }
