// Command sockreap-nri is sockreap's NRI plugin: it drains a pod's network
// namespace at StopPodSandbox. It runs pre-registered in the runtime's NRI
// plugin directory or as a daemon connecting to the NRI socket.
package main

import (
	"os"

	"github.com/sockreap/sockreap/internal/nriplugin"
)

func main() { os.Exit(nriplugin.Main(os.Args[1:], os.Stderr)) }
