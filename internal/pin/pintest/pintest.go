// Package pintest is the clean-up tests share for a pin store they ran
// hooks against.
package pintest

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockreap/sockreap/internal/pin"
)

// Cleanup makes t release, when it ends, every pin left in the store at
// stateDir and detach the store's pins mount, so that no namespace
// outlives a failed test.
func Cleanup(t testing.TB, stateDir string) {
	t.Cleanup(func() {
		s := pin.Store{Dir: stateDir}
		pins, _ := s.List()
		for _, p := range pins {
			_, _ = s.Release(p.ID)
		}
		_ = unix.Unmount(filepath.Join(stateDir, "pins"), unix.MNT_DETACH)
	})
}
