package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigWritableByOthersRefused: the shim's config names what runs as
// root (the runtime, the hook); one that others may write is refused.
func TestConfigWritableByOthersRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shim.toml")
	if err := os.WriteFile(path, []byte("runtime = \"/tmp/evil\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "SOCKREAP_SHIM_CONFIG" {
			return path
		}
		return ""
	}
	if _, err := LoadConfig(Parse([]string{"create", "id"}), env); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("LoadConfig of a world-writable config: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadConfig(Parse([]string{"create", "id"}), env); err != nil || c.Runtime != "/tmp/evil" {
		t.Errorf("LoadConfig of a private config: %+v, %v", c, err)
	}
}
