package reap

import (
	"errors"

	"github.com/sockreap/sockreap/internal/netns"
	"github.com/sockreap/sockreap/internal/sockdiag"
)

// List returns every TCP and UDP socket of ns, both families. A table
// whose dump the kernel flags as interrupted is dumped again, up to three
// times; the last attempt's sockets are kept either way.
func List(ns *netns.NS) ([]sockdiag.Socket, error) {
	var c *sockdiag.Conn
	if err := ns.Do(func() (err error) { c, err = sockdiag.Open(); return err }); err != nil {
		return nil, err
	}
	defer c.Close()
	var out []sockdiag.Socket
	for _, t := range tables(Options{}) {
		for try := 0; ; try++ {
			n := len(out)
			err := c.Dump(t.family, t.protocol, sockdiag.AllStates, func(s *sockdiag.Socket) error {
				out = append(out, *s)
				return nil
			})
			if errors.Is(err, sockdiag.ErrInterrupted) && try < 3 {
				out = out[:n]
				continue
			}
			if err != nil && !errors.Is(err, sockdiag.ErrInterrupted) {
				return nil, err
			}
			break
		}
	}
	return out, nil
}
