package oci

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sockreap/sockreap/internal/safefs"
)

func TestReadState(t *testing.T) {
	st, err := ReadState(strings.NewReader(`{"ociVersion":"1.0.2","id":"c1","status":"created","pid":42,"bundle":"/b","annotations":{"io.sockreap.drain":"false"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "c1" || st.Pid != 42 || st.Bundle != "/b" || !DrainDisabled(st.Annotations) {
		t.Fatalf("state decoded wrong: %+v", st)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty OCI state"},
		{"  \n", "empty OCI state"},
		{"{", "malformed OCI state"},
		{"not json", "malformed OCI state"},
		{`{"id":"a"} {"id":"b"}`, "trailing data"},
		{`{"ociVersion":"1.0.2"}`, "no container id"},
		{`[1,2]`, "malformed OCI state"},
	} {
		_, err := ReadState(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadState(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := ReadState(nil); !errors.Is(err, ErrEmptyState) {
		t.Errorf("ReadState(nil) = %v, want ErrEmptyState", err)
	}
}

func TestDrainDisabled(t *testing.T) {
	for v, want := range map[string]bool{"false": true, "FALSE": true, "0": true, "off": true, "no": true, "true": false, "": false, "yes": false} {
		if got := DrainDisabled(map[string]string{AnnotationDrain: v}); got != want {
			t.Errorf("DrainDisabled(%q) = %v, want %v", v, got, want)
		}
	}
	if DrainDisabled(nil) {
		t.Error("DrainDisabled(nil) = true")
	}
}

const sampleConfig = `{
  "ociVersion": "1.0.2",
  "process": {"args": ["sh"], "cwd": "/", "x-unknown": {"deep": [1, 2.50, "<&>"]}},
  "root": {"path": "rootfs"},
  "annotations": {"a": "b"},
  "hooks": {
    "prestart": [{"path": "/usr/bin/cni-thing", "args": ["cni-thing", "up"]}],
    "poststop": [{"path": "/usr/bin/other", "args": ["other"], "env": ["X=1"]}]
  },
  "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/n1"}]},
  "vendorField": 12345678901234567890
}`

func writeBundle(t *testing.T, config string, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readDoc(t *testing.T, bundle string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("config.json no longer parses: %v\n%s", err, b)
	}
	return m
}

func hookList(t *testing.T, doc map[string]any, stage Stage) []map[string]any {
	t.Helper()
	hooks, _ := doc["hooks"].(map[string]any)
	raw, _ := hooks[string(stage)].([]any)
	var out []map[string]any
	for _, h := range raw {
		out = append(out, h.(map[string]any))
	}
	return out
}

func TestAddHooks(t *testing.T) {
	bundle := writeBundle(t, sampleConfig, 0o640)
	opts := HookOptions{Path: "/usr/local/bin/sockreap-hook", Args: []string{"--state-dir", "/run/x"}, Timeout: 5}
	changed, err := AddHooks(bundle, opts)
	if err != nil || !changed {
		t.Fatalf("AddHooks = %v, %v; want changed", changed, err)
	}
	doc := readDoc(t, bundle)

	// Everything else is kept, unknown fields and big numbers included.
	before := readDocFrom(t, sampleConfig)
	for k, v := range before {
		if k == "hooks" {
			continue
		}
		if !reflect.DeepEqual(doc[k], v) {
			t.Errorf("field %q changed: %v -> %v", k, v, doc[k])
		}
	}
	if !reflect.DeepEqual(hookList(t, doc, "prestart"), hookList(t, before, "prestart")) {
		t.Error("prestart hooks changed")
	}
	cr := hookList(t, doc, StageCreateRuntime)
	if len(cr) != 1 || cr[0]["path"] != opts.Path {
		t.Fatalf("createRuntime hooks = %v", cr)
	}
	wantArgs := []any{"sockreap-hook", "createRuntime", "--state-dir", "/run/x", "--oci-timeout=5"}
	if !reflect.DeepEqual(cr[0]["args"], wantArgs) || cr[0]["timeout"] != json.Number("5") {
		t.Errorf("createRuntime hook = %v, want args %v timeout 5", cr[0], wantArgs)
	}
	ps := hookList(t, doc, StagePoststop)
	if len(ps) != 2 || ps[0]["path"] != opts.Path || ps[1]["path"] != "/usr/bin/other" {
		t.Fatalf("poststop hooks = %v; want sockreap first, then the existing one", ps)
	}
	fi, _ := os.Stat(filepath.Join(bundle, "config.json"))
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}

	// Second call: nothing to do, file untouched.
	b1, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	changed, err = AddHooks(bundle, opts)
	if err != nil || changed {
		t.Fatalf("second AddHooks = %v, %v; want unchanged", changed, err)
	}
	b2, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if string(b1) != string(b2) {
		t.Error("second AddHooks rewrote the file")
	}

	// Different options: updated in place, no duplicate, env of an
	// existing sockreap hook kept.
	opts2 := HookOptions{Path: "/opt/bin/sockreap-hook"}
	changed, err = AddHooks(bundle, opts2)
	if err != nil || !changed {
		t.Fatalf("AddHooks with new options = %v, %v; want changed", changed, err)
	}
	doc = readDoc(t, bundle)
	ps = hookList(t, doc, StagePoststop)
	if len(ps) != 2 || ps[0]["path"] != "/opt/bin/sockreap-hook" || ps[0]["timeout"] != nil {
		t.Fatalf("poststop after update = %v", ps)
	}
	if !reflect.DeepEqual(ps[0]["args"], []any{"sockreap-hook", "poststop"}) {
		t.Errorf("poststop args = %v", ps[0]["args"])
	}

	// No leftover temporary files.
	ents, _ := os.ReadDir(bundle)
	if len(ents) != 1 {
		t.Errorf("bundle holds %d entries, want only config.json", len(ents))
	}

	// Remove: back to the original hooks.
	changed, err = RemoveHooks(bundle, "")
	if err != nil || !changed {
		t.Fatalf("RemoveHooks = %v, %v", changed, err)
	}
	doc = readDoc(t, bundle)
	if !reflect.DeepEqual(doc, before) {
		t.Errorf("after RemoveHooks the document differs from the original:\n%v\n%v", doc, before)
	}
}

func readDocFrom(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAddHooksDedupesAndCreatesHooks(t *testing.T) {
	bundle := writeBundle(t, `{"ociVersion":"1.0.2","hooks":{"poststop":[
		{"path":"/a/sockreap-hook","args":["sockreap-hook","poststop"]},
		{"path":"/b/sockreap-hook","args":["sockreap-hook","poststop"]}]}}`, 0o600)
	if _, err := AddHooks(bundle, HookOptions{Path: "/c/sockreap-hook"}); err != nil {
		t.Fatal(err)
	}
	doc := readDoc(t, bundle)
	if ps := hookList(t, doc, StagePoststop); len(ps) != 1 || ps[0]["path"] != "/c/sockreap-hook" {
		t.Errorf("poststop = %v, want one hook /c/sockreap-hook", ps)
	}
	if cr := hookList(t, doc, StageCreateRuntime); len(cr) != 1 {
		t.Errorf("createRuntime = %v, want one hook", cr)
	}

	// No hooks object at all.
	bundle = writeBundle(t, `{"ociVersion":"1.0.2"}`, 0o600)
	if changed, err := AddHooks(bundle, HookOptions{Path: "/c/sockreap-hook"}); err != nil || !changed {
		t.Fatalf("AddHooks = %v, %v", changed, err)
	}
	if len(hookList(t, readDoc(t, bundle), StagePoststop)) != 1 {
		t.Error("poststop hook not added")
	}
}

func TestAddHooksErrors(t *testing.T) {
	if _, err := AddHooks(t.TempDir(), HookOptions{Path: "/x/sockreap-hook"}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("missing config.json: %v", err)
	}
	if _, err := AddHooks(t.TempDir(), HookOptions{Path: "sockreap-hook"}); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("relative path: %v", err)
	}
	bundle := writeBundle(t, `{"hooks": 3}`, 0o600)
	if _, err := AddHooks(bundle, HookOptions{Path: "/x/sockreap-hook"}); err == nil {
		t.Error("malformed hooks accepted")
	}
	bundle = writeBundle(t, `not json`, 0o600)
	if _, err := AddHooks(bundle, HookOptions{Path: "/x/sockreap-hook"}); err == nil {
		t.Error("malformed config accepted")
	}
	if b, _ := os.ReadFile(filepath.Join(bundle, "config.json")); string(b) != "not json" {
		t.Error("a malformed config.json was rewritten")
	}
}

func TestReadConfig(t *testing.T) {
	c, err := ReadConfig(writeBundle(t, sampleConfig, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasNetns || c.NetnsPath != "/var/run/netns/n1" || c.Annotations["a"] != "b" {
		t.Errorf("ReadConfig = %+v", c)
	}
	if _, err := ReadConfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("missing config.json: %v", err)
	}
	if _, err := ReadConfig(""); err == nil {
		t.Error("empty bundle accepted")
	}
	for p, want := range map[string]bool{"/proc/12/ns/net": true, "/proc/../proc/1/ns/net": true, "/var/run/netns/x": false, "/procfoo": false} {
		if IsProcPath(p) != want {
			t.Errorf("IsProcPath(%q) = %v", p, !want)
		}
	}
}

// TestConfigTooLarge: a config.json above MaxConfigSize is refused without
// being read (a sparse file: its size alone must decide), by the reader and
// by the hook injection, and the file stays as it was.
func TestConfigTooLarge(t *testing.T) {
	bundle := t.TempDir()
	path := ConfigPath(bundle)
	if err := os.WriteFile(path, []byte(`{"ociVersion":"1.0.2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, MaxConfigSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(bundle); err == nil || !errors.Is(err, safefs.ErrTooLarge) || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("ReadConfig of an oversized config.json: %v", err)
	}
	if _, err := AddHooks(bundle, HookOptions{Path: "/usr/local/bin/sockreap-hook"}); !errors.Is(err, safefs.ErrTooLarge) {
		t.Errorf("AddHooks on an oversized config.json: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != MaxConfigSize+1 {
		t.Errorf("oversized config.json changed: %v %v", fi.Size(), err)
	}
}

// TestAddHooksRefusesSymlinkedConfig: a config.json that is a symlink is
// not written through (root would rewrite whatever it points at); the
// target stays as it was.
func TestAddHooksRefusesSymlinkedConfig(t *testing.T) {
	bundle := t.TempDir()
	target := filepath.Join(t.TempDir(), "daemon.json")
	orig := []byte(`{"log-level":"warn"}`)
	if err := os.WriteFile(target, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, ConfigPath(bundle)); err != nil {
		t.Fatal(err)
	}
	_, err := AddHooks(bundle, HookOptions{Path: "/usr/local/bin/sockreap-hook"})
	if err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Errorf("AddHooks through a symlinked config.json: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != string(orig) {
		t.Errorf("symlink target rewritten: %s", b)
	}
	if fi, err := os.Lstat(ConfigPath(bundle)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink itself was replaced: %v %v", fi, err)
	}
}

// A hook entry of ours runs with HookEnv (GOMAXPROCS=1); one the operator
// gave an env keeps it, and keeps their own GOMAXPROCS.
func TestAddHooksEnv(t *testing.T) {
	bundle := writeBundle(t, sampleConfig, 0o644)
	opts := HookOptions{Path: "/usr/local/bin/sockreap-hook"}
	if _, err := AddHooks(bundle, opts); err != nil {
		t.Fatal(err)
	}
	cr := hookList(t, readDoc(t, bundle), StageCreateRuntime)
	if !reflect.DeepEqual(cr[0]["env"], []any{"GOMAXPROCS=1"}) {
		t.Fatalf("new entry env = %v, want [GOMAXPROCS=1]", cr[0]["env"])
	}
	for _, tc := range []struct{ env, want []any }{
		{[]any{"SOCKREAP_CONFIG=/etc/x.toml"}, []any{"SOCKREAP_CONFIG=/etc/x.toml", "GOMAXPROCS=1"}},
		{[]any{"GOMAXPROCS=4"}, []any{"GOMAXPROCS=4"}},
	} {
		doc := readDoc(t, bundle)
		hookList(t, doc, StageCreateRuntime)[0]["env"] = tc.env
		b, _ := json.Marshal(doc)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := AddHooks(bundle, opts); err != nil {
			t.Fatal(err)
		}
		if got := hookList(t, readDoc(t, bundle), StageCreateRuntime)[0]["env"]; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("operator env %v: after AddHooks %v, want %v", tc.env, got, tc.want)
		}
	}
}
