// Command sockreap-hook is the sockreap OCI hook (createRuntime, poststop)
// and the operator's command line (ls, drain, doctor, pins, gc, configure).
package main

import (
	"os"

	"github.com/sockreap/sockreap/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], cli.StdEnv())) }
