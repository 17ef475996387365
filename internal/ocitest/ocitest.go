// Package ocitest writes the OCI bundles of tests that run a real runtime:
// a root filesystem of the static busybox, and runc's default config.json
// (`runc spec`) edited as a JSON document, so that every field the test
// does not set stays the runtime's own.
package ocitest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Spec writes runc's default config.json into the bundle directory dir,
// its process running args without a terminal.
func Spec(t testing.TB, dir string, args ...string) {
	t.Helper()
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec --bundle %s: %v\n%s", dir, err, out)
	}
	Edit(t, dir, func(doc map[string]any) {
		proc := doc["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = args
	})
}

// Edit rewrites the config.json of the bundle in dir through fn.
func Edit(t testing.TB, dir string, fn func(doc map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	fn(doc)
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// SetNetnsPath makes the container of doc join the network namespace at
// path instead of getting a new one.
func SetNetnsPath(doc map[string]any, path string) {
	for _, ns := range doc["linux"].(map[string]any)["namespaces"].([]any) {
		if m := ns.(map[string]any); m["type"] == "network" {
			m["path"] = path
		}
	}
}

// Busybox is the path of the static busybox (busybox-static), links
// resolved: the one on PATH, else /bin/busybox.
func Busybox() string {
	if p, err := exec.LookPath("busybox"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
	}
	return "/bin/busybox"
}

// Rootfs makes dir a root filesystem: the directories a container
// expects, and Busybox as /bin/busybox with /bin/sh linked to it.
func Rootfs(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(Busybox())
	if err != nil {
		t.Fatalf("needs busybox-static (scripts/deps.sh installs it): %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
}
