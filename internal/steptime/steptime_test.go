package steptime

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestOffMarksNothing(t *testing.T) {
	on = nil
	Mark("x") // must not panic nor record
	Flush("stage")
}

func TestFlushAppendsOneLinePerRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "steps")
	for _, label := range []string{"a", "b"} {
		on = &run{file: file, last: start}
		Mark("one")
		Mark("two")
		Flush(label)
	}
	on = nil
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for _, want := range []string{"a", "b"} {
		var l struct {
			Label string
			Steps []struct {
				Step string
				MS   float64
			}
		}
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %s: %v in %q", want, err, b)
		}
		if l.Label != want || len(l.Steps) != 2 || l.Steps[0].Step != "one" || l.Steps[1].Step != "two" || l.Steps[0].MS < 0 {
			t.Errorf("line %+v, want label %s and steps one, two", l, want)
		}
	}
}
