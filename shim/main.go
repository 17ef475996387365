// Command sockreap-shim is a runc-compatible runtime that adds the sockreap
// hooks to every container it creates, then runs the real runtime.
package main

import (
	"os"

	"github.com/sockreap/sockreap/internal/shim"
)

func main() {
	os.Exit(shim.Main(os.Args[1:], os.Stderr))
}
