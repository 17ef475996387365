package engine

import (
	"fmt"
	"strings"
)

// CRIOOptions says what to write into the CRI-O drop-in.
type CRIOOptions struct {
	ShimPath   string
	SetDefault bool
}

// CRIODropIn is the default drop-in file; CRI-O reads
// /etc/crio/crio.conf.d/*.conf in lexical order, later files win.
const CRIODropIn = "/etc/crio/crio.conf.d/99-sockreap.conf"

// CRIO returns the drop-in that declares a "sockreap" runtime handler
// running the shim (and, with SetDefault, makes it CRI-O's default). The
// file is sockreap's own and is replaced whole; CRI-O's main config is
// never touched.
func CRIO(path string, old []byte, exists bool, o CRIOOptions) *Edit {
	var b strings.Builder
	b.WriteString("# Written by sockreap-hook configure crio. Runs containers through\n")
	b.WriteString("# sockreap-shim (runc plus the sockreap hooks). Remove this file to undo.\n")
	b.WriteString("[crio.runtime]\n")
	if o.SetDefault {
		fmt.Fprintf(&b, "default_runtime = %q\n", RuntimeName)
	}
	fmt.Fprintf(&b, "\n[crio.runtime.runtimes.%s]\n", RuntimeName)
	fmt.Fprintf(&b, "runtime_path = %q\n", o.ShimPath)
	b.WriteString("runtime_type = \"oci\"\n")
	// runc's state dir, so runc and the shim see the same containers.
	b.WriteString("runtime_root = \"/run/runc\"\n")
	return &Edit{Path: path, Old: old, Exists: exists, New: []byte(b.String())}
}
