package suite

import (
	"fmt"
	"github.com/sockreap/sockreap/internal/nettest"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// T lets scenarios use internal/nettest's fixtures outside `go test`: it
// implements nettest.T.
type T struct {
	name     string
	cleanups []func()
	log      []string
	status   string
	reason   []string
}

var _ nettest.T = (*T)(nil)

type stopScenario struct{}

func (t *T) Helper()      {}
func (t *T) Name() string { return t.name }
func (t *T) Failed() bool { return t.status == Fail }
func (t *T) Skipped() bool {
	return t.status == Skip
}
func (t *T) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

func (t *T) Logf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	t.log = append(t.log, line)
	fmt.Fprintf(os.Stderr, "  [%s] %s\n", t.name, line)
}
func (t *T) Log(a ...any) { t.Logf("%s", strings.TrimSuffix(fmt.Sprintln(a...), "\n")) }

// Errorf records a failure and lets the scenario go on.
func (t *T) Errorf(format string, a ...any) {
	t.status = Fail
	t.reason = append(t.reason, fmt.Sprintf(format, a...))
	t.Logf("FAIL: "+format, a...)
}
func (t *T) Error(a ...any) { t.Errorf("%s", strings.TrimSuffix(fmt.Sprintln(a...), "\n")) }

// Fatalf records a failure and stops the scenario (its cleanups still run).
func (t *T) Fatalf(format string, a ...any) {
	t.Errorf(format, a...)
	panic(stopScenario{})
}
func (t *T) Fatal(a ...any) { t.Fatalf("%s", strings.TrimSuffix(fmt.Sprintln(a...), "\n")) }
func (t *T) FailNow()       { t.status = Fail; panic(stopScenario{}) }
func (t *T) Fail()          { t.status = Fail }

// Skipf stops the scenario as skipped, with the reason.
func (t *T) Skipf(format string, a ...any) {
	if t.status != Fail {
		t.status = Skip
	}
	t.reason = append(t.reason, fmt.Sprintf(format, a...))
	panic(stopScenario{})
}
func (t *T) Skip(a ...any) { t.Skipf("%s", strings.TrimSuffix(fmt.Sprintln(a...), "\n")) }
func (t *T) SkipNow()      { t.Skipf("skipped") }

// Notef records the scenario's notable outcome (shown in the table).
func (t *T) Notef(format string, a ...any) {
	t.reason = append(t.reason, fmt.Sprintf(format, a...))
	t.Logf(format, a...)
}

// run runs fn as scenario name and returns its outcome. A panic other than
// a stop is a failure with its stack; cleanups run last-in first-out.
func run(name string, fn func(t *T)) Scenario {
	t := &T{name: name, status: Pass}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "=== %s\n", name)
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(stopScenario); !ok {
					t.Errorf("panic: %v\n%s", r, debug.Stack())
				}
			}
		}()
		fn(t)
	}()
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(stopScenario); !ok {
						t.Errorf("cleanup panic: %v", r)
					}
				}
			}()
			t.cleanups[i]()
		}()
	}
	s := Scenario{Name: name, Status: t.status, Reason: strings.Join(t.reason, "; "), Log: t.log,
		DurationMS: time.Since(start).Milliseconds()}
	fmt.Fprintf(os.Stderr, "--- %s: %s %s (%s)\n", name, s.Status, s.Reason, time.Since(start).Round(time.Millisecond))
	return s
}
