package main

import (
	"fmt"
	"os"
	"time"
)

var start = time.Now()

// logf prints progress to stderr; stdout carries the table.
func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[kernels %6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}
