// Command image writes sockreap's container image as a docker-save archive
// (package image); make image runs it.
//
// Usage: go run ./scripts/image -o bin/sockreap-image.tar -tag sockreap/sockreap:local bin/sockreap-hook bin/sockreap-shim bin/sockreap-nri
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sockreap/sockreap/internal/image"
)

func main() {
	out := flag.String("o", "bin/sockreap-image.tar", "archive to write")
	tag := flag.String("tag", image.DefaultRef, "image reference the archive names")
	busybox := flag.String("busybox", "", "static busybox to include (default: busybox on PATH)")
	flag.Parse()
	if err := image.Build(*out, *tag, *busybox, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s): import with `docker load -i %s` or `ctr -n k8s.io images import %s`\n", *out, *tag, *out, *out)
}
