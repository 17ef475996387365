package pin

import (
	"errors"
	"io/fs"
	"os"
)

// Count returns the number of pins, read from the pins directory alone
// (one getdents): cheap enough for every hook run's metrics.
func (s Store) Count() (int, error) {
	f, err := os.Open(s.pinsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}
